// Package partition holds what the scale-out queues (ingest/natsq,
// ingest/kafkaq) share with the detection that reads them: batches tagged
// with their partition, announcements of partitions gained and lost, and
// the partition key read from an event.
//
// Every event of one key goes to one partition, and one replica at a time
// owns a partition, so the window state of a key lives in one replica. A
// replica that gains a partition rebuilds that partition's windows from
// the queue (ReplayPartition); one that loses it drops them.
package partition

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fastjson"

	"github.com/vigil-k8s/vigil/ingest"
)

// Change says what a Batch announces.
type Change uint8

const (
	// Records: the Batch carries records of its partition.
	Records Change = iota
	// Gained: this replica owns the partition from now on. It comes before
	// the partition's first records.
	Gained
	// Lost: this replica no longer owns the partition. It comes after the
	// last records of the partition that this replica was handed; their
	// acknowledgements still count.
	Lost
)

// ErrUncommitted is what the Ack of a batch returns, wrapped, when the
// batch was processed but the queue could not record it because the
// partition is moving: the partition's next owner reads the batch again.
var ErrUncommitted = errors.New("batch processed but not recorded: the partition is moving")

// ErrAhead is what ReplayPartition returns, wrapped, when From.After is
// past what the queue recorded as processed: state saved at that position
// holds events the queue delivers again, so it must not be used.
var ErrAhead = errors.New("position is past the partition's acknowledged floor")

func (c Change) String() string {
	switch c {
	case Gained:
		return "gained"
	case Lost:
		return "lost"
	}
	return "records"
}

// Batch is what a partitioned queue's ReadPartition returns: records of
// one partition (Change is Records), or an announcement without records.
//
// A Gained batch has no Ack. A Lost batch may have one: the queue then
// hands the partition to its next owner once Ack is called (detection has
// saved the partition's state), or by itself after a while when it is
// not.
type Batch struct {
	ingest.Batch
	Partition int
	Change    Change
	// Pos is the queue position of the last message of the batch within
	// its partition, counted from 1 (NATS: the stream sequence; Kafka: the
	// offset plus one). Positions grow with the order of the partition;
	// state saved after processing up to Pos is continued by
	// ReplayPartition(From{After: Pos}).
	Pos uint64
}

// From says where ReplayPartition starts: right after After when it is
// set (a saved state covers what came before), else Span before the
// partition's acknowledged floor.
type From struct {
	After uint64
	Span  time.Duration
}

// Reader is a queue whose reads say which partition they come from. The
// announcements come in order with the records, on the one goroutine that
// reads, so no lock is needed to keep them apart.
type Reader interface {
	ReadPartition(ctx context.Context) (Batch, error)
	// ReplayPartition hands fn, in order, the acknowledged events of
	// partition p from where From says up to the partition's acknowledged
	// floor, as batches without an Ack. With From.After past the floor it
	// returns ErrAhead and calls fn for nothing.
	ReplayPartition(ctx context.Context, p int, from From, fn func(ingest.Batch, ingest.ReplayInfo) error) (ingest.ReplayInfo, error)
	// Owned lists the partitions this replica owns now.
	Owned() []int
}

// DefaultKey is the field events are partitioned by: most window rules
// group by user.
const DefaultKey = "user.username"

// Keyer reads the partition key of events: the string at a dotted path of
// the event's JSON. Missing or not a string, the key is empty, and all
// such events share one partition. A Keyer is safe for concurrent use.
type Keyer struct {
	path    []string
	parsers sync.Pool
}

// NewKeyer returns a Keyer for a dotted path such as "user.username".
func NewKeyer(path string) (*Keyer, error) {
	if path == "" {
		path = DefaultKey
	}
	parts := strings.Split(path, ".")
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("partition key %q: empty field name", path)
		}
	}
	return &Keyer{path: parts}, nil
}

// Path is the dotted path the Keyer reads.
func (k *Keyer) Path() string { return strings.Join(k.path, ".") }

// Append appends the key of event data to dst. An event that is not valid
// JSON has the empty key: detection rejects it later, with its position.
func (k *Keyer) Append(dst, data []byte) []byte {
	p, _ := k.parsers.Get().(*fastjson.Parser)
	if p == nil {
		p = &fastjson.Parser{}
	}
	defer k.parsers.Put(p)
	v, err := p.ParseBytes(data)
	if err != nil {
		return dst
	}
	return append(dst, v.GetStringBytes(k.path...)...)
}
