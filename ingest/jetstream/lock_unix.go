//go:build unix

package jetstream

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// lockName is the file in the store directory that one process at a time
// holds locked: two servers writing one store would corrupt it.
const lockName = "LOCK"

// lockDir takes the store directory's lock, without waiting. The lock goes
// with the process, so a crash leaves nothing to clean up; the file keeps
// the holder's pid for the message another process gets.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open queue lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("queue store %s is in use by another vigil (pid %s); one process at a time may use a data dir", dir, bytes.TrimSpace(holder))
		}
		return nil, fmt.Errorf("lock queue store %s: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
