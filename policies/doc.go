// Package policies holds vigil's built-in rule packs, embedded in the binary
// as YAML, each rule with the fixtures that must and must not fire it.
package policies

import (
	"embed"
	"io/fs"

	"github.com/vigil-k8s/vigil/detect"
)

//go:embed builtin
var builtin embed.FS

// Builtin returns the built-in packs as a file system of YAML rule files.
func Builtin() fs.FS {
	sub, err := fs.Sub(builtin, "builtin")
	if err != nil {
		panic("BUG: embedded builtin directory missing: " + err.Error())
	}
	return sub
}

// LoadBuiltin parses the built-in packs. Rule files are named
// builtin/<pack>.yaml in messages.
func LoadBuiltin() (*detect.Catalog, error) {
	c, err := detect.LoadFS(Builtin(), ".")
	if c != nil {
		for i := range c.Rules {
			c.Rules[i].File = "builtin/" + c.Rules[i].File
		}
	}
	return c, err
}
