package jetstream

import (
	"github.com/nats-io/nats.go"

	"github.com/vigil-k8s/vigil/ingest/internal/frames"
)

// The message body format is ingest/internal/frames, shared with the
// external NATS queue so that both streams read alike.

// compress returns the body of a message of frames b, in a pool buffer:
// b compressed, with the header that says so, unless that saves nothing.
func (q *Queue) compress(m *nats.Msg, b []byte) []byte {
	body, compressed := q.bufs.Compress(b)
	if compressed {
		m.Header.Set(HeaderEncoding, frames.EncodingS2)
	}
	return body
}

// body returns the frames of a message: its data, or the data decompressed
// into a pool buffer, which is also returned (nil when none was used) for
// putBuf once the records are done with. Publish never writes more than
// the payload limit (this run's or the default, which an earlier run may
// have had): a larger size is corruption, and must not become an
// allocation.
func (q *Queue) body(data []byte, h nats.Header) ([]byte, *[]byte, error) {
	return q.bufs.Body(data, h.Get(HeaderEncoding), max(q.opts.MaxPayload, DefaultMaxPayload))
}

// getBuf returns a pool buffer with room for size bytes.
func (q *Queue) getBuf(size int) *[]byte { return q.bufs.Get(size) }

func (q *Queue) putBuf(b *[]byte) { q.bufs.Put(b) }

// putBufs returns the buffers of messages whose publish is over.
func (q *Queue) putBufs(msgs []*nats.Msg) {
	for _, m := range msgs {
		b := m.Data[:0]
		q.putBuf(&b)
		m.Data = nil
	}
}
