package natsq

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"
)

// WindowBucket is the object store that holds each partition's window
// state. An object store rather than a key-value bucket: a value of the
// latter is one message, at most the server's max_payload (1 MiB by
// default), and the window state of a busy partition is larger.
const WindowBucket = "vigil_windows"

// Snapshots keeps the saved window state of each partition, shared by the
// replicas: the one that gains a partition continues from the state its
// previous owner saved last. Methods are safe for concurrent use.
type Snapshots struct {
	obs jetstream.ObjectStore
}

// Snapshots opens (or creates) the object store of window state, with as
// many copies as the streams.
func (q *Queue) Snapshots(ctx context.Context) (*Snapshots, error) {
	obs, err := q.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      WindowBucket,
		Description: "window state of each partition, saved by its owner",
		Storage:     jetstream.FileStorage,
		Replicas:    q.opts.Replicas,
		Compression: true,
	})
	if err != nil {
		return nil, fmt.Errorf("open object store %s: %w", WindowBucket, err)
	}
	return &Snapshots{obs: obs}, nil
}

func snapshotName(p int) string { return "partition-" + strconv.Itoa(p) }

// Load returns the state saved last for partition p, nil when there is
// none.
func (s *Snapshots) Load(ctx context.Context, p int) ([]byte, error) {
	b, err := s.obs.GetBytes(ctx, snapshotName(p))
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load window state of partition %d: %w", p, err)
	}
	return b, nil
}

// Save replaces the saved state of partition p.
func (s *Snapshots) Save(ctx context.Context, p int, data []byte) error {
	if _, err := s.obs.PutBytes(ctx, snapshotName(p), data); err != nil {
		return fmt.Errorf("save window state of partition %d: %w", p, err)
	}
	return nil
}
