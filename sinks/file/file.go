// Package file writes alerts as JSON lines to standard output or to a file
// that rotates by size.
package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/sinks/internal/sinkutil"
)

// DefaultMaxBackups is how many rotated files are kept when MaxSizeMB is set.
const DefaultMaxBackups = 5

// Config configures a file or stdout sink.
type Config struct {
	// Name is the sink's name from the config (set by the builder).
	Name string `yaml:"-"`
	// Path is the file to append to; "" or "-" means the standard output.
	Path string `yaml:"path"`
	// MaxSizeMB rotates the file when it would grow past this size
	// (0: never). The current file is renamed PATH.1, PATH.1 becomes
	// PATH.2, and so on up to MaxBackups.
	MaxSizeMB int `yaml:"max_size_mb"`
	// MaxBackups is how many rotated files are kept (default 5).
	MaxBackups int `yaml:"max_backups"`
}

// Validate checks the config; field paths are relative to the sink.
func (c Config) Validate() error {
	var errs []error
	if c.MaxSizeMB < 0 {
		errs = append(errs, sinkutil.Fieldf("max_size_mb", "must not be negative"))
	}
	if c.MaxBackups < 0 {
		errs = append(errs, sinkutil.Fieldf("max_backups", "must not be negative"))
	}
	if c.MaxSizeMB > 0 && (c.Path == "" || c.Path == "-") {
		errs = append(errs, sinkutil.Fieldf("max_size_mb", "rotation needs a path, not the standard output"))
	}
	return errors.Join(errs...)
}

// Sink writes alerts as JSON lines. It is safe for concurrent use.
type Sink struct {
	cfg      Config
	maxBytes int64

	mu   sync.Mutex
	w    io.Writer // the file or stdout
	f    *os.File  // nil for stdout
	size int64
}

// New opens the sink. stdout is used when the path is "" or "-".
func New(cfg Config, stdout io.Writer) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxBackups == 0 {
		cfg.MaxBackups = DefaultMaxBackups
	}
	s := &Sink{cfg: cfg, maxBytes: int64(cfg.MaxSizeMB) << 20}
	if cfg.Path == "" || cfg.Path == "-" {
		s.w = stdout
		return s, nil
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Sink) open() error {
	if dir := filepath.Dir(s.cfg.Path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("create alert directory: %w", err)
		}
	}
	f, err := os.OpenFile(s.cfg.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open alert file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat alert file: %w", err)
	}
	s.f, s.w, s.size = f, f, st.Size()
	return nil
}

// rotate shifts PATH.n to PATH.n+1 (dropping the oldest), PATH to PATH.1,
// and opens a fresh PATH.
func (s *Sink) rotate() error {
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("close alert file: %w", err)
	}
	p := s.cfg.Path
	_ = os.Remove(fmt.Sprintf("%s.%d", p, s.cfg.MaxBackups))
	for i := s.cfg.MaxBackups - 1; i >= 1; i-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", p, i), fmt.Sprintf("%s.%d", p, i+1)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("rotate alert file: %w", err)
		}
	}
	if err := os.Rename(p, p+".1"); err != nil {
		return fmt.Errorf("rotate alert file: %w", err)
	}
	return s.open()
}

// Send writes one line per alert. A write error is retryable (a full disk
// may drain); an alert that cannot be encoded is not.
func (s *Sink) Send(_ context.Context, alerts ...detect.Alert) (bool, error) {
	buf := make([]byte, 0, 1024*len(alerts))
	for i := range alerts {
		var err error
		if buf, err = alerts[i].AppendJSON(buf); err != nil {
			return false, fmt.Errorf("encode alert %s: %w", alerts[i].Rule, err)
		}
		buf = append(buf, '\n')
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil && s.maxBytes > 0 && s.size > 0 && s.size+int64(len(buf)) > s.maxBytes {
		if err := s.rotate(); err != nil {
			return true, err
		}
	}
	n, err := s.w.Write(buf)
	s.size += int64(n)
	if err != nil {
		return true, fmt.Errorf("write alerts: %w", err)
	}
	return false, nil
}

// Close closes the file (not the standard output).
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

func (s *Sink) String() string {
	if s.cfg.Path == "" || s.cfg.Path == "-" {
		return "stdout[" + s.cfg.Name + "]"
	}
	return "file[" + s.cfg.Name + "]"
}
