package envelope

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/logfile"
)

// Options configure a Reader.
type Options struct {
	// Format forces one input format; Auto (the default) detects it per
	// file and, in files that mix them, per JSON value.
	Format    Format
	Cluster   string
	BatchSize int
	// MaxValueBytes bounds one JSON value (default logfile.DefaultMaxLineBytes).
	MaxValueBytes int
	// OnError is told about every record or file that could not be read
	// (origin is "file:line" and, inside an envelope, the record). The read
	// goes on; a non-nil error returned stops it.
	OnError func(origin string, err error) error
	// OnSalvage is told about every raw audit record whose JSON could not
	// be read whole and was kept for its metadata (logfile.Options).
	OnSalvage func(origin string, err error)
	// OnTruncated is told about every event a provider cut, with the
	// event as rebuilt; the Item's bytes and strings are valid during the
	// call.
	OnTruncated func(Item)
}

// Counts are what a Reader read from one provider's envelopes.
type Counts struct {
	// Events were handed on, Truncated of them cut by the provider;
	// Skipped records hold no audit event by design (control messages,
	// other log categories); Bad records could not be read.
	Events, Truncated, Skipped, Bad int
}

// Reader reads audit events from files in any of the providers' envelopes
// and from raw audit logs, which it hands to ingest/logfile. It is an
// ingest.Source.
type Reader struct {
	opts   Options
	stdin  io.Reader
	inputs []logfile.Input
	// sub reads the current input when it is a raw audit log.
	sub *logfile.Reader
	cur *envFile
	dec Decoder
	// batch is the batch being filled by the decoder's callbacks.
	batch  []ingest.Record
	stop   error
	counts map[Format]*Counts
	// free holds arenas whose batch was acknowledged, for reuse.
	free chan []byte
}

var _ ingest.Source = (*Reader)(nil)

// Open checks the paths and returns a Reader over them. A directory is
// walked recursively (exports of S3, Cloud Storage and Blob storage nest
// their objects by date), files in path order with rotated audit logs by
// the time in their name. "-" is stdin.
func Open(paths []string, stdin io.Reader, opts Options) (*Reader, error) {
	if opts.Format == "" {
		opts.Format = Auto
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = logfile.DefaultBatchSize
	}
	if opts.MaxValueBytes <= 0 {
		opts.MaxValueBytes = logfile.DefaultMaxLineBytes
	}
	r := &Reader{opts: opts, stdin: stdin, counts: map[Format]*Counts{}, free: make(chan []byte, 4)}
	r.dec = Decoder{Format: opts.Format, Cluster: opts.Cluster, Item: r.item, Bad: r.bad, Skip: r.skipped}
	var err error
	r.inputs, err = logfile.Inputs(paths, walk, "files")
	return r, err
}

// walk lists a directory tree's regular, non-hidden files, rotated audit
// logs first, as ingest/logfile orders them (logfile.SortRotated).
func walk(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && path != dir {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open input: %w", err)
	}
	logfile.SortRotated(files)
	return files, nil
}

// Counts returns what was read from each provider's envelopes (Audit:
// events passed through from raw audit values in envelope files).
func (r *Reader) Counts() map[Format]Counts {
	out := make(map[Format]Counts, len(r.counts))
	for f, c := range r.counts {
		out[f] = *c
	}
	return out
}

func (r *Reader) count(f Format) *Counts {
	if f == "" {
		f = Audit
	}
	c := r.counts[f]
	if c == nil {
		c = &Counts{}
		r.counts[f] = c
	}
	return c
}

func (r *Reader) item(it Item) error {
	c := r.count(it.Provider)
	c.Events++
	if it.Truncated {
		c.Truncated++
		if r.opts.OnTruncated != nil {
			r.opts.OnTruncated(it)
		}
	}
	r.batch = append(r.batch, ingest.Record{Data: it.Data, Cluster: it.Cluster, Origin: it.Origin})
	return nil
}

func (r *Reader) bad(origin string, err error, _ []byte) error {
	r.count(r.opts.Format).Bad++
	if stop := r.report(origin, err); stop != nil {
		r.stop = stop
		return stop
	}
	return nil
}

func (r *Reader) skipped(string, string) { r.count(r.opts.Format).Skipped++ }

// arenaSize holds a batch of typical events.
const arenaSize = 8 << 20

// Read returns the next batch; io.EOF when every input is read. The
// records' Data are valid until the batch's Ack is called.
func (r *Reader) Read(ctx context.Context) (ingest.Batch, error) {
	select {
	case r.dec.Out = <-r.free:
	default:
		r.dec.Out = make([]byte, 0, arenaSize)
	}
	b, err := r.read(ctx)
	if b.Ack == nil {
		arena := r.dec.Out[:0]
		b.Ack = func(context.Context, error) error {
			select {
			case r.free <- arena:
			default:
			}
			return nil
		}
	} else {
		// A raw log's batch comes with its own arena: this one is unused.
		select {
		case r.free <- r.dec.Out[:0]:
		default:
		}
	}
	r.dec.Out = nil
	return b, err
}

func (r *Reader) read(ctx context.Context) (ingest.Batch, error) {
	r.batch = make([]ingest.Record, 0, min(r.opts.BatchSize, 1024))
	for len(r.batch) < r.opts.BatchSize {
		if err := ctx.Err(); err != nil {
			return ingest.Batch{Records: r.batch}, err
		}
		if r.sub != nil {
			if len(r.batch) > 0 {
				// A raw log's batches come whole from ingest/logfile.
				break
			}
			b, err := r.sub.Read(ctx)
			if errors.Is(err, io.EOF) {
				r.sub.Close(ctx)
				r.sub = nil
				if len(b.Records) == 0 {
					continue
				}
				err = nil
			}
			return b, err
		}
		if r.cur == nil {
			if len(r.inputs) == 0 {
				break
			}
			in := r.inputs[0]
			r.inputs = r.inputs[1:]
			if err := r.open(in); err != nil {
				if stop := r.report(in.Label, err); stop != nil {
					return ingest.Batch{Records: r.batch}, stop
				}
			}
			continue
		}
		v, err := r.cur.sp.next()
		if err != nil {
			label := r.cur.label
			r.cur.close()
			r.cur = nil
			if errors.Is(err, io.EOF) {
				continue
			}
			if stop := r.report(label, err); stop != nil {
				return ingest.Batch{Records: r.batch}, stop
			}
			continue
		}
		if err := r.dec.Value(v.data, r.lineOrigin(v.line), v.cut); err != nil {
			return ingest.Batch{Records: r.batch}, err
		}
	}
	if len(r.batch) == 0 {
		return ingest.Batch{}, io.EOF
	}
	return ingest.Batch{Records: r.batch}, nil
}

func (r *Reader) report(origin string, err error) error {
	if r.opts.OnError == nil {
		return nil
	}
	// Origins share the batch's arena; the error may outlive it.
	return r.opts.OnError(strings.Clone(origin), err)
}

// lineOrigin is "file:line" for the current input, written in the batch's
// arena (as logfile does, it costs no allocation per record).
func (r *Reader) lineOrigin(line int) string {
	d := &r.dec
	start := len(d.Out)
	d.Out = append(d.Out, r.cur.label...)
	d.Out = append(d.Out, ':')
	d.Out = strconv.AppendInt(d.Out, int64(line), 10)
	return unsafe.String(&d.Out[start], len(d.Out)-start)
}

// Close closes the current input.
func (r *Reader) Close(ctx context.Context) error {
	if r.sub != nil {
		r.sub.Close(ctx)
		r.sub = nil
	}
	if r.cur != nil {
		r.cur.close()
		r.cur = nil
	}
	r.inputs = nil
	return nil
}

// envFile is an input being read as envelopes.
type envFile struct {
	label   string
	closers []io.Closer
	sp      interface{ next() (value, error) }
}

func (f *envFile) close() {
	for i := len(f.closers) - 1; i >= 0; i-- {
		f.closers[i].Close()
	}
}

// open starts reading an input: raw audit logs go to ingest/logfile,
// everything else to the envelope decoder.
func (r *Reader) open(in logfile.Input) error {
	f := &envFile{label: in.Label}
	var src io.Reader
	if in.Path == "-" {
		if r.stdin == nil {
			return errors.New("no standard input")
		}
		src = r.stdin
	} else {
		file, err := os.Open(in.Path)
		if err != nil {
			return err
		}
		f.closers = append(f.closers, file)
		src = file
	}
	br := bufio.NewReaderSize(src, 256<<10)
	raw := br // before decompression, for ingest/logfile on stdin
	var head []byte
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			f.close()
			return fmt.Errorf("gzip: %w", err)
		}
		f.closers = append(f.closers, zr)
		br = bufio.NewReaderSize(zr, 256<<10)
	}
	head, _ = br.Peek(64 << 10)
	trimmed := bytes.TrimLeft(head, " \t\r\n")
	// A file found in a directory that is not JSON (a README, a checksum)
	// is passed over.
	if in.Walked && (len(trimmed) == 0 || (trimmed[0] != '{' && trimmed[0] != '[')) {
		f.close()
		return nil
	}
	if r.opts.Format == Audit || (r.opts.Format == Auto && isRawAudit(trimmed)) {
		f.close()
		var err error
		lo := logfile.Options{BatchSize: r.opts.BatchSize, MaxLineBytes: r.opts.MaxValueBytes, Cluster: r.opts.Cluster, OnError: r.opts.OnError, OnSalvage: r.opts.OnSalvage}
		if in.Path == "-" {
			r.sub, err = logfile.Open([]string{"-"}, raw, lo)
		} else {
			r.sub, err = logfile.Open([]string{in.Path}, nil, lo)
		}
		return err
	}
	if i := bytes.IndexByte(trimmed, '\n'); i >= 0 && isPretty(trimmed[:i]) {
		f.sp = newSplitter(br, r.opts.MaxValueBytes)
	} else {
		f.sp = newLineSplitter(br, r.opts.MaxValueBytes)
	}
	r.cur = f
	return nil
}

// envelopeKeys are members only an envelope has.
var envelopeKeys = []string{"messageType", "protoPayload", "records", "logEvents", "awslogs", "events", "category"}

// hasKey reports whether l holds "key" followed by a colon.
func hasKey(l []byte, key string) bool {
	k := []byte(`"` + key + `"`)
	for {
		i := bytes.Index(l, k)
		if i < 0 {
			return false
		}
		l = bytes.TrimLeft(l[i+len(k):], " \t")
		if len(l) > 0 && l[0] == ':' {
			return true
		}
	}
}

// isRawAudit reports whether the head of a file is a raw audit log (or
// no JSON at all), for ingest/logfile to read: no line names an envelope's
// member near its start, where a raw event holds only its metadata (a
// pretty-printed document is looked at whole).
func isRawAudit(head []byte) bool {
	lines := bytes.Split(head, []byte{'\n'})
	if first := bytes.TrimSpace(lines[0]); len(first) == 1 {
		lines = [][]byte{head}
	}
	for _, l := range lines {
		if len(lines) > 1 {
			l = l[:min(len(l), 512)]
		}
		for _, k := range envelopeKeys {
			if hasKey(l, k) {
				return false
			}
		}
	}
	return true
}
