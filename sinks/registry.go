package sinks

import (
	"fmt"
	"io"
	"strings"

	natsgo "github.com/nats-io/nats.go"

	"github.com/vigil-k8s/vigil/sinks/alertmanager"
	"github.com/vigil-k8s/vigil/sinks/file"
	"github.com/vigil-k8s/vigil/sinks/kafka"
	"github.com/vigil-k8s/vigil/sinks/nats"
	"github.com/vigil-k8s/vigil/sinks/slack"
	"github.com/vigil-k8s/vigil/sinks/webhook"
)

// Sink types that FileSink makes.
const (
	TypeStdout = "stdout"
	TypeFile   = "file"
)

// registry lists the sink types, in the order docs and errors name them.
// A sink type is a package below this one with a Config (yaml tags and a
// Validate method) and a constructor, plus one entry here; docs/sinks.md
// has a row for it in its table of types and a section (checked by a test).
var registry = []sinkType{
	{name: TypeStdout, local: true, doc: "JSON lines on standard output", kind: fileKind},
	{name: TypeFile, local: true, doc: "JSON lines appended to a file that rotates by size", kind: fileKind},
	{name: "webhook", doc: "a JSON POST to an HTTP endpoint, optionally signed with HMAC-SHA256",
		kind: kindOf(func(c webhook.Config, e buildEnv) (Sink, error) {
			c.Name = e.name
			return webhook.New(c)
		})},
	{name: "alertmanager", doc: "Prometheus Alertmanager's v2 API, on every listed instance",
		kind: kindOf(func(c alertmanager.Config, e buildEnv) (Sink, error) {
			c.Name = e.name
			return alertmanager.New(c)
		})},
	{name: "slack", doc: "readable messages to a Slack incoming webhook",
		kind: kindOf(func(c slack.Config, e buildEnv) (Sink, error) {
			c.Name = e.name
			return slack.New(c)
		})},
	{name: "nats", doc: "JSON messages on a NATS subject, optionally acknowledged by JetStream",
		kind: kindOf(func(c nats.Config, e buildEnv) (Sink, error) {
			c.Name = e.name
			return nats.New(c, e.nc)
		})},
	{name: "kafka", doc: "JSON records on a Kafka topic, keyed by rule and group key",
		kind: kindOf(func(c kafka.Config, e buildEnv) (Sink, error) {
			c.Name = e.name
			return kafka.New(c)
		})},
}

// fileKind serves stdout and file: the file sink writes to standard output
// when it has no path.
var fileKind = kindOf(func(c file.Config, e buildEnv) (Sink, error) {
	c.Name = e.name
	return file.New(c, e.stdout)
})

// Settings are the keys of a sink entry that belong to its type (url,
// path, brokers ...): a pointer to the Config struct of the type's package.
type Settings interface {
	// Validate checks the settings; field paths are relative to the sink.
	Validate() error
}

// sinkType is one entry of the registry.
type sinkType struct {
	name string
	// doc describes the type in one line, as docs/sinks.md does.
	doc string
	// local output (stdout, file) blocks Dispatch when its buffer is full
	// instead of dropping: it cannot be "down" the way a network sink can,
	// and replay output that silently lost alerts would be wrong.
	local bool
	kind
}

// kind is how a sink type decodes its settings and builds its sink.
type kind struct {
	// settings returns new, empty settings to decode the type's keys into.
	settings func() Settings
	// build makes the sink from settings of the type that settings returns.
	build func(s Settings, e buildEnv) (Sink, error)
}

// buildEnv is what a constructor may need besides its settings.
type buildEnv struct {
	name   string
	stdout io.Writer
	// nc is the connection nats sinks without a url publish on.
	nc *natsgo.Conn
}

// kindOf makes the kind of a type whose settings are a C, decoded through
// its pointer P.
func kindOf[C any, P interface {
	*C
	Settings
}](build func(c C, e buildEnv) (Sink, error)) kind {
	return kind{
		settings: func() Settings { return P(new(C)) },
		build: func(s Settings, e buildEnv) (Sink, error) {
			p, ok := s.(P)
			if !ok || p == nil {
				return nil, fmt.Errorf("settings are %T, want %T", s, P(nil))
			}
			return build(*p, e)
		},
	}
}

// lookupType returns the registry entry of a type name.
func lookupType(name string) (sinkType, bool) {
	for _, t := range registry {
		if t.name == name {
			return t, true
		}
	}
	return sinkType{}, false
}

// typeNames lists the registered types for an error message:
// "stdout, file, ... or kafka".
func typeNames() string {
	names := make([]string, len(registry))
	for i, t := range registry {
		names[i] = t.name
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
