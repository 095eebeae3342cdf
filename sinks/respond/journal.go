package respond

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// Journal is the JSONL file of records, one per line, appended. It is
// created 0600: Before holds copies of what actions removed, token
// secrets included.
type Journal struct {
	mu   sync.Mutex
	f    *os.File
	path string
	sync bool
	// latest is the last record of each ID; Before is kept only for
	// started records, the ones a redelivered alert resumes.
	latest map[string]Record
	// Bad counts lines that were not records (a write cut short by a
	// crash); they are skipped.
	Bad []string
}

// JournalOptions tune OpenJournal.
type JournalOptions struct {
	// Sync flushes every record to disk before Append returns (vigil
	// serve: a record is the proof an action was taken).
	Sync bool
	// Truncate starts an empty file (replay's --actions-output).
	Truncate bool
}

// OpenJournal opens or creates the journal at path and reads the records
// already in it.
func OpenJournal(path string, o JournalOptions) (*Journal, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create journal dir: %w", err)
	}
	flags := os.O_RDWR | os.O_CREATE | os.O_APPEND
	if o.Truncate {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	j := &Journal{f: f, path: path, sync: o.Sync, latest: map[string]Record{}}
	recs, bad, err := readRecords(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	j.Bad = bad
	for _, r := range recs {
		if r.Status != StatusStarted {
			r.Before = nil
		}
		j.latest[r.ID] = r
	}
	// A line cut short by a crash must not swallow the next record.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			if _, err := f.Write([]byte{'\n'}); err != nil {
				f.Close()
				return nil, fmt.Errorf("repair journal: %w", err)
			}
		}
	}
	return j, nil
}

// Path is the journal's file.
func (j *Journal) Path() string { return j.path }

// Append writes rec as one line (one write, so a concurrent vigil respond
// undo never interleaves with it).
func (j *Journal) Append(rec Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode record %s: %w", rec.ID, err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if j.sync {
		if err := j.f.Sync(); err != nil {
			return fmt.Errorf("sync journal: %w", err)
		}
	}
	if rec.Status != StatusStarted {
		rec.Before = nil
	}
	j.latest[rec.ID] = rec
	return nil
}

// Lookup returns the last record of id.
func (j *Journal) Lookup(id string) (Record, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	r, ok := j.latest[id]
	return r, ok
}

// Close closes the file.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// ReadJournal returns every record of the journal at path, in order. Lines
// that are not records are reported in bad (file:line: cause).
func ReadJournal(path string) (recs []Record, bad []string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open journal: %w", err)
	}
	defer f.Close()
	return readRecords(f, path)
}

func readRecords(r io.Reader, path string) ([]Record, []string, error) {
	br := bufio.NewReader(r)
	var recs []Record
	var bad []string
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(b)) > 0 {
			var rec Record
			if jerr := json.Unmarshal(b, &rec); jerr != nil || rec.ID == "" {
				bad = append(bad, fmt.Sprintf("%s:%d: not a record", path, line))
			} else {
				recs = append(recs, rec)
			}
		}
		if errors.Is(err, io.EOF) {
			return recs, bad, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read journal: %w", err)
		}
	}
}
