// Package logfile reads audit events from the files kube-apiserver's log
// backend writes: one JSON event per line, gzip-compressed or not, rotated
// sets in a directory, standard input, and JSON documents holding an
// EventList (such as saved webhook bodies).
package logfile

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unsafe"

	"github.com/vigil-k8s/vigil/ingest"
)

// Defaults.
const (
	DefaultBatchSize = 4096
	// DefaultMaxLineBytes bounds one event; the apiserver's own default
	// truncation keeps events far below it.
	DefaultMaxLineBytes = 16 << 20
	// maxDocumentBytes bounds a pretty-printed JSON document read whole.
	maxDocumentBytes = 1 << 30
)

// Options configure a Reader.
type Options struct {
	BatchSize    int
	MaxLineBytes int
	// Cluster is set on every record.
	Cluster string
	// OnError is told about every line or file that could not be read
	// (origin is "file:line" or "file"). The read goes on; return a non-nil
	// error from OnError to stop it (strict mode).
	OnError func(origin string, err error) error
	// OnSalvage, when set, is told about every record whose JSON cannot be
	// decoded whole but whose metadata can: detection evaluates what can be
	// read of it, marked vigil.bodyUnparsed. err says what is wrong. The
	// record is passed on either way; one that is not an event at all is
	// left for the decoder to reject.
	OnSalvage func(origin string, err error)
}

// Reader yields batches of records from a list of inputs, in order.
// It is an ingest.Source.
type Reader struct {
	opts Options
	// arena holds the lines and origins of the batch being read; free
	// holds arenas whose batch was acknowledged, for reuse. Reading a log
	// then allocates nothing per line.
	arena  []byte
	free   chan []byte
	inputs []Input
	cur    *fileReader
	stdin  io.Reader
	// dec checks the records that are not whole JSON, for OnSalvage.
	dec ingest.Decoder
	// Lines and Bytes count what was read.
	Lines, Bytes int64
	last         lastOrigin
}

var _ ingest.Source = (*Reader)(nil)

// Input is a file to read.
type Input struct {
	Path  string // "-" for stdin
	Label string
	// Walked is set for a file found in a directory.
	Walked bool
}

// Inputs expands paths as readers take them: "-" is stdin, a directory
// the files list returns for it (an error says it holds no what), any
// other path itself once it exists.
func Inputs(paths []string, list func(dir string) ([]string, error), what string) ([]Input, error) {
	var inputs []Input
	var errs []error
	for _, p := range paths {
		if p == "-" {
			inputs = append(inputs, Input{Path: "-", Label: "stdin"})
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("open input: %w", err))
			continue
		}
		if !st.IsDir() {
			inputs = append(inputs, Input{Path: p, Label: p})
			continue
		}
		files, err := list(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(files) == 0 {
			errs = append(errs, fmt.Errorf("open input %s: directory holds no %s", p, what))
		}
		for _, f := range files {
			inputs = append(inputs, Input{Path: f, Label: f, Walked: true})
		}
	}
	return inputs, errors.Join(errs...)
}

// Open checks the paths and returns a Reader over them. A directory expands
// to its files, rotated files (audit-2026-11-22T05-56-31.320.log) in time
// order before the current one. "-" is stdin. A missing path is an error
// here; a file that fails later is reported through OnError.
func Open(paths []string, stdin io.Reader, opts Options) (*Reader, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.MaxLineBytes <= 0 {
		opts.MaxLineBytes = DefaultMaxLineBytes
	}
	r := &Reader{opts: opts, stdin: stdin, free: make(chan []byte, 8)}
	var err error
	r.inputs, err = Inputs(paths, dirFiles, "log files")
	return r, err
}

var rotatedStamp = regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(\.\d+)?`)

// isLogName accepts the names audit logs have (audit.log, audit-<time>.log,
// audit.log.1.gz, events.json, events.jsonl), so a README or a checksum
// beside them is not read as a log full of bad lines.
func isLogName(name string) bool {
	for _, ext := range []string{".json", ".jsonl", ".gz"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return strings.Contains(name, ".log")
}

// dirFiles lists a directory's regular, non-hidden log files in
// SortRotated's order.
func dirFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open input: %w", err)
	}
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") && isLogName(e.Name()) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	SortRotated(out)
	return out, nil
}

// SortRotated orders log files as they were written: rotated ones by the
// timestamp in their name (audit-2026-11-22T06-00-00.123.log), then the
// rest (the live file) by path.
func SortRotated(paths []string) {
	stamp := make(map[string]string, len(paths))
	for _, p := range paths {
		stamp[p] = rotatedStamp.FindString(filepath.Base(p))
	}
	sort.SliceStable(paths, func(i, j int) bool {
		a, b := stamp[paths[i]], stamp[paths[j]]
		if (a == "") != (b == "") {
			return a != ""
		}
		if a != b {
			return a < b
		}
		return paths[i] < paths[j]
	})
}

// arenaSize holds a default batch of typical events; a line that does not
// fit is copied on its own.
const arenaSize = 8 << 20

// Read returns the next batch; io.EOF when every input is read. The
// records' Data and Origin are valid until the batch's Ack is called.
func (r *Reader) Read(ctx context.Context) (ingest.Batch, error) {
	select {
	case r.arena = <-r.free:
	default:
		r.arena = make([]byte, 0, arenaSize)
	}
	b, err := r.read(ctx, ingest.Batch{})
	// The arena now belongs to the batch; Ack hands it back for reuse.
	arena := r.arena[:0]
	r.arena = nil
	b.Ack = func(context.Context, error) error {
		select {
		case r.free <- arena:
		default:
		}
		return nil
	}
	return b, err
}

func (r *Reader) read(ctx context.Context, b ingest.Batch) (ingest.Batch, error) {
	for len(b.Records) < r.opts.BatchSize {
		if err := ctx.Err(); err != nil {
			return b, err
		}
		if r.cur == nil {
			if len(r.inputs) == 0 {
				break
			}
			in := r.inputs[0]
			r.inputs = r.inputs[1:]
			fr, err := r.open(in)
			if err != nil {
				if stop := r.report(in.Label, err); stop != nil {
					return b, stop
				}
				continue
			}
			r.cur = fr
		}
		var err error
		b.Records, err = r.cur.next(b.Records, r.opts.BatchSize, r)
		if err != nil {
			r.cur.close()
			r.cur = nil
			var stop stopError
			if errors.As(err, &stop) {
				return b, stop.err
			}
			if !errors.Is(err, io.EOF) {
				if stop := r.report(r.curLabel(err), err); stop != nil {
					return b, stop
				}
			}
		}
	}
	if len(b.Records) == 0 {
		return b, io.EOF
	}
	return b, nil
}

// own copies a line into the batch's arena (or alone when it does not fit).
func (r *Reader) own(line []byte) []byte {
	if cap(r.arena)-len(r.arena) < len(line) {
		return bytes.Clone(line)
	}
	start := len(r.arena)
	r.arena = append(r.arena, line...)
	return r.arena[start:len(r.arena):len(r.arena)]
}

// origin returns "label:line", kept in the arena. Lines mostly come one
// after another: the number is counted up in place, not formatted anew.
func (r *Reader) origin(label string, line int) string {
	o := &r.last
	if o.label != label || line != o.line+1 || !o.next() {
		o.text = strconv.AppendInt(append(append(o.text[:0], label...), ':'), int64(line), 10)
		o.label = label
	}
	o.line = line
	b := r.own(o.text)
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// lastOrigin is the last origin made, "label:line".
type lastOrigin struct {
	label string
	line  int
	text  []byte
}

// next counts the line number of text up by one; false when it would
// need another digit.
func (o *lastOrigin) next() bool {
	for i := len(o.text) - 1; i > len(o.label); i-- {
		if o.text[i] < '9' {
			o.text[i]++
			return true
		}
		o.text[i] = '0'
	}
	return false
}

func (r *Reader) curLabel(err error) string {
	var le *lineError
	if errors.As(err, &le) {
		return le.origin
	}
	return ""
}

func (r *Reader) report(origin string, err error) error {
	var le *lineError
	if errors.As(err, &le) {
		origin, err = le.origin, le.err
	}
	if r.opts.OnError == nil {
		return nil
	}
	return r.opts.OnError(origin, err)
}

// Close closes the current file.
func (r *Reader) Close(context.Context) error {
	if r.cur != nil {
		r.cur.close()
		r.cur = nil
	}
	r.inputs = nil
	return nil
}

// stopError carries the error OnError returned to stop the read: it was
// reported already.
type stopError struct{ err error }

func (e stopError) Error() string { return e.err.Error() }

type lineError struct {
	origin string
	err    error
}

func (e *lineError) Error() string { return e.origin + ": " + e.err.Error() }
func (e *lineError) Unwrap() error { return e.err }

// fileReader reads one input line by line.
type fileReader struct {
	label   string
	closers []io.Closer
	br      *bufio.Reader
	line    int
	// doc holds the records of a whole-file JSON document, served in
	// batches; docErr says where the document broke off, reported after
	// the records before it.
	doc    []ingest.Record
	docErr error
}

func (r *Reader) open(in Input) (*fileReader, error) {
	fr := &fileReader{label: in.Label}
	var src io.Reader
	if in.Path == "-" {
		if r.stdin == nil {
			return nil, errors.New("no standard input")
		}
		src = r.stdin
	} else {
		f, err := os.Open(in.Path)
		if err != nil {
			return nil, err
		}
		fr.closers = append(fr.closers, f)
		src = f
	}
	br := bufio.NewReaderSize(src, 256<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			fr.close()
			return nil, fmt.Errorf("gzip: %w", err)
		}
		fr.closers = append(fr.closers, zr)
		br = bufio.NewReaderSize(zr, 256<<10)
	}
	fr.br = br
	if err := fr.maybeDocument(r); err != nil {
		fr.close()
		return nil, err
	}
	return fr, nil
}

// maybeDocument reads the input whole when its first line is not a complete
// JSON value (a pretty-printed EventList or array of events).
func (fr *fileReader) maybeDocument(r *Reader) error {
	// A read error here (a truncated gzip) is reported by the line reader,
	// with its line, after the lines before it.
	first, _ := fr.br.Peek(64 << 10)
	trimmed := bytes.TrimLeft(first, " \t\r\n")
	if len(trimmed) == 0 || (trimmed[0] != '{' && trimmed[0] != '[') {
		return nil
	}
	// Only a pretty-printed document opens with a line holding just "{"
	// or "[": anything else is JSON lines, where a bad first line is one bad
	// line, not a lost file.
	i := bytes.IndexByte(trimmed, '\n')
	if i < 0 {
		return nil
	}
	if first := string(bytes.TrimSpace(trimmed[:i])); first != "{" && first != "[" {
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(fr.br, maxDocumentBytes+1))
	if err != nil {
		return err
	}
	if len(data) > maxDocumentBytes {
		return fmt.Errorf("JSON document larger than %d bytes", maxDocumentBytes)
	}
	fr.doc, fr.docErr = split(data, r.opts.Cluster, fr.label)
	if fr.doc == nil {
		fr.doc = []ingest.Record{}
	}
	return nil
}

// next appends up to max records.
func (fr *fileReader) next(recs []ingest.Record, max int, r *Reader) ([]ingest.Record, error) {
	if fr.doc != nil {
		n := min(max-len(recs), len(fr.doc))
		for _, rec := range fr.doc[:n] {
			recs = r.add(recs, rec)
		}
		fr.doc = fr.doc[n:]
		if len(fr.doc) > 0 {
			return recs, nil
		}
		if fr.docErr != nil {
			if stop := r.report(fr.label, fr.docErr); stop != nil {
				return recs, stopError{stop}
			}
		}
		return recs, io.EOF
	}
	for len(recs) < max {
		line, err := fr.readLine(r.opts.MaxLineBytes)
		if len(line) > 0 || err == nil {
			fr.line++
		}
		if len(line) > 0 {
			line = r.own(line)
			r.Lines++
			r.Bytes += int64(len(line))
			origin := r.origin(fr.label, fr.line)
			if isEventList(line) || line[0] == '[' {
				items, serr := split(line, r.opts.Cluster, origin)
				for _, rec := range items {
					recs = r.add(recs, rec)
				}
				if serr != nil {
					if stop := r.report(origin, serr); stop != nil {
						return recs, stopError{stop}
					}
				}
			} else {
				recs = r.add(recs, ingest.Record{Data: line, Cluster: r.opts.Cluster, Origin: origin})
			}
		}
		if err != nil {
			var tl errTooLong
			if errors.As(err, &tl) {
				fr.line++
				origin := fmt.Sprintf("%s:%d", fr.label, fr.line)
				if stop := r.report(origin, err); stop != nil {
					return recs, stopError{stop}
				}
				continue
			}
			if errors.Is(err, io.EOF) {
				return recs, io.EOF
			}
			return recs, &lineError{origin: fmt.Sprintf("%s:%d", fr.label, fr.line+1), err: err}
		}
	}
	return recs, nil
}

type errTooLong struct{ n, limit int }

func (e errTooLong) Error() string {
	return fmt.Sprintf("line of %d bytes or more exceeds the limit of %d bytes", e.n, e.limit)
}

// readLine returns the next non-empty line without its newline, valid
// until the next call. An over-long line is skipped and reported as errTooLong.
func (fr *fileReader) readLine(limit int) ([]byte, error) {
	for {
		chunk, err := fr.br.ReadSlice('\n')
		if err == nil || errors.Is(err, io.EOF) {
			line := bytes.TrimSpace(chunk)
			if len(line) == 0 {
				if err != nil {
					return nil, err
				}
				fr.line++
				continue
			}
			if len(line) > limit {
				return nil, errTooLong{n: len(line), limit: limit}
			}
			return line, err
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
		// A line longer than the buffer: gather it up to the limit.
		buf := bytes.Clone(chunk)
		for errors.Is(err, bufio.ErrBufferFull) {
			chunk, err = fr.br.ReadSlice('\n')
			if len(buf)+len(chunk) > limit {
				n := len(buf) + len(chunk)
				for errors.Is(err, bufio.ErrBufferFull) {
					chunk, err = fr.br.ReadSlice('\n')
					n += len(chunk)
				}
				if err != nil && !errors.Is(err, io.EOF) {
					return nil, err
				}
				return nil, errTooLong{n: n, limit: limit}
			}
			buf = append(buf, chunk...)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		return bytes.TrimSpace(buf), err
	}
}

func (fr *fileReader) close() {
	for i := len(fr.closers) - 1; i >= 0; i-- {
		fr.closers[i].Close()
	}
}
