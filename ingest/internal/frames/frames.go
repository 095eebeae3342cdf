// Package frames is the message body format of the NATS queues: several
// entries per message, each framed as (uvarint length, de-duplication key,
// uvarint length, event JSON), the whole S2-compressed (block format) when
// that saves space. It is the format ingest/jetstream writes, so the
// streams of both queues read alike.
package frames

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/klauspost/compress/s2"

	"github.com/vigil-k8s/vigil/ingest"
)

// EncodingS2 is the value of the encoding header of a compressed body.
const EncodingS2 = "s2"

// Target is how much framed event data goes into a message before it is
// compressed: audit JSON shrinks about 8×, so a message stays under the
// 64 KiB a NATS connection reads at a time.
const Target = 256 << 10

// maxPooled is the largest buffer kept for reuse.
const maxPooled = 1 << 20

// Size is the most bytes an entry takes in a body before compression.
func Size(e ingest.Entry) int { return len(e.Key) + len(e.Data) + 2*binary.MaxVarintLen32 }

// Append appends e's frame to b.
func Append(b []byte, e ingest.Entry) []byte {
	b = binary.AppendUvarint(b, uint64(len(e.Key)))
	b = append(b, e.Key...)
	b = binary.AppendUvarint(b, uint64(len(e.Data)))
	return append(b, e.Data...)
}

// Frame is one decoded entry; Key and Data alias the body.
type Frame struct{ Key, Data []byte }

// Decode splits a body back into entries, appending them to dst. On a
// corrupt frame it returns the entries before it and an error.
func Decode(b []byte, dst []Frame) ([]Frame, error) {
	for len(b) > 0 {
		var f Frame
		for i := range 2 {
			n, w := binary.Uvarint(b)
			if w <= 0 || uint64(len(b)-w) < n {
				return dst, fmt.Errorf("corrupt frame at %d bytes from the end", len(b))
			}
			v := b[w : w+int(n)]
			b = b[w+int(n):]
			if i == 0 {
				f.Key = v
			} else {
				f.Data = v
			}
		}
		dst = append(dst, f)
	}
	return dst, nil
}

// Pool holds byte buffers for framing, compressing and decompressing.
type Pool struct{ p sync.Pool }

// Get returns a buffer with room for size bytes.
func (p *Pool) Get(size int) *[]byte {
	if b, ok := p.p.Get().(*[]byte); ok {
		if cap(*b) >= size {
			return b
		}
		p.Put(b)
	}
	b := make([]byte, 0, max(size, Target))
	return &b
}

// Put gives a buffer back; nil and very large buffers are dropped.
func (p *Pool) Put(b *[]byte) {
	if b != nil && cap(*b) <= maxPooled {
		*b = (*b)[:0]
		p.p.Put(b)
	}
}

// Compress returns the body for frames b in a pool buffer, and whether it
// is compressed: it is unless compression saves nothing.
func (p *Pool) Compress(b []byte) ([]byte, bool) {
	need := s2.MaxEncodedLen(len(b))
	dst := *p.Get(need)
	if need > 0 {
		if enc := s2.Encode(dst[:need], b); len(enc) < len(b) {
			return enc, true
		}
	}
	return append(dst[:0], b...), false
}

// Body returns the frames of a body in the given encoding ("" or
// EncodingS2): the data itself, or the data decompressed into a pool
// buffer, which is also returned (nil when none was used) for Put once the
// frames are done with. A decompressed size over limit is corruption and
// is refused before it can become an allocation.
func (p *Pool) Body(data []byte, encoding string, limit int) ([]byte, *[]byte, error) {
	switch encoding {
	case "":
		return data, nil, nil
	case EncodingS2:
		n, err := s2.DecodedLen(data)
		if err != nil {
			return nil, nil, fmt.Errorf("decompress queue message: %w", err)
		}
		if n > limit {
			return nil, nil, fmt.Errorf("decompress queue message: size %d is over the payload limit of %d", n, limit)
		}
		buf := p.Get(n)
		out, err := s2.Decode((*buf)[:n], data)
		if err != nil {
			p.Put(buf)
			return nil, nil, fmt.Errorf("decompress queue message: %w", err)
		}
		return out, buf, nil
	default:
		return nil, nil, fmt.Errorf("queue message in unknown encoding %q", encoding)
	}
}
