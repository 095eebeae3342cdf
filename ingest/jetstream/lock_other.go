//go:build !unix

package jetstream

import "os"

// lockDir takes no lock where flock(2) does not exist: there, nothing
// keeps a second process from opening the same store.
func lockDir(string) (*os.File, error) { return nil, nil }
