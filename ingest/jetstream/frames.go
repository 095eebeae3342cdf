package jetstream

import (
	"encoding/binary"
	"fmt"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"

	"github.com/vigil-k8s/vigil/ingest"
)

// compress returns the body of a message of frames b, in a pool buffer:
// b compressed, with the header that says so, unless that saves nothing.
func (q *Queue) compress(m *nats.Msg, b []byte) []byte {
	need := s2.MaxEncodedLen(len(b))
	dst := *q.getBuf(need)
	if need > 0 {
		if enc := s2.Encode(dst[:need], b); len(enc) < len(b) {
			m.Header.Set(HeaderEncoding, encodingS2)
			return enc
		}
	}
	return append(dst[:0], b...)
}

// body returns the frames of a message: its data, or the data decompressed
// into a pool buffer, which is also returned (nil when none was used) for
// putBuf once the records are done with.
func (q *Queue) body(data []byte, h nats.Header) ([]byte, *[]byte, error) {
	switch enc := h.Get(HeaderEncoding); enc {
	case "":
		return data, nil, nil
	case encodingS2:
		n, err := s2.DecodedLen(data)
		if err != nil {
			return nil, nil, fmt.Errorf("decompress queue message: %w", err)
		}
		// Publish never writes more than the payload limit (this run's or
		// the default, which an earlier run may have had): a larger size is
		// corruption, and must not become an allocation.
		if limit := max(q.opts.MaxPayload, DefaultMaxPayload); n > limit {
			return nil, nil, fmt.Errorf("decompress queue message: size %d is over the payload limit of %d", n, limit)
		}
		buf := q.getBuf(n)
		out, err := s2.Decode((*buf)[:n], data)
		if err != nil {
			q.putBuf(buf)
			return nil, nil, fmt.Errorf("decompress queue message: %w", err)
		}
		return out, buf, nil
	default:
		return nil, nil, fmt.Errorf("queue message in unknown encoding %q", enc)
	}
}

// getBuf returns a pool buffer with room for size bytes.
func (q *Queue) getBuf(size int) *[]byte {
	if b, ok := q.bufs.Get().(*[]byte); ok {
		if cap(*b) >= size {
			return b
		}
		q.putBuf(b)
	}
	b := make([]byte, 0, max(size, rawTarget))
	return &b
}

func (q *Queue) putBuf(b *[]byte) {
	if b != nil && cap(*b) <= maxPooled {
		*b = (*b)[:0]
		q.bufs.Put(b)
	}
}

// putBufs returns the buffers of messages whose publish is over.
func (q *Queue) putBufs(msgs []*nats.Msg) {
	for _, m := range msgs {
		b := m.Data[:0]
		q.putBuf(&b)
		m.Data = nil
	}
}

func frameSize(e ingest.Entry) int {
	return len(e.Key) + len(e.Data) + 2*binary.MaxVarintLen32
}

func appendFrame(b []byte, e ingest.Entry) []byte {
	b = binary.AppendUvarint(b, uint64(len(e.Key)))
	b = append(b, e.Key...)
	b = binary.AppendUvarint(b, uint64(len(e.Data)))
	return append(b, e.Data...)
}

// frame is one decoded entry of a message; key and data alias the message.
type frame struct{ key, data []byte }

// decodeFrames splits a message body back into entries.
func decodeFrames(b []byte, dst []frame) ([]frame, error) {
	for len(b) > 0 {
		var f frame
		for i := range 2 {
			n, w := binary.Uvarint(b)
			if w <= 0 || uint64(len(b)-w) < n {
				return dst, fmt.Errorf("corrupt frame at %d bytes from the end", len(b))
			}
			v := b[w : w+int(n)]
			b = b[w+int(n):]
			if i == 0 {
				f.key = v
			} else {
				f.data = v
			}
		}
		dst = append(dst, f)
	}
	return dst, nil
}

// Read implements ingest.Source: it blocks for one message and then takes
// what else is already delivered, up to MaxBatch records. Duplicates (by
