package kafkaq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// WindowsSuffix names the topic of saved window state: Topic-windows.
const WindowsSuffix = "-windows"

const (
	headerSnapshot = "vigil-snapshot" // the id of the save a chunk belongs to
	headerChunk    = "vigil-chunk"    // its index
)

// Snapshots keeps the window state each partition's owner saved last, in
// the compacted topic Topic-windows: partition p of that topic belongs to
// event partition p. A save is written as chunks (a message is at most
// BatchBytes) and then a manifest, all to that partition in order, so the
// last message of the partition is the manifest of the last complete
// save. Keys are per chunk index, so compaction keeps the last save whole.
// Methods are safe for concurrent use.
type Snapshots struct {
	q     *Queue
	topic string
	w     *kafka.Writer
	chunk int
}

type manifest struct {
	ID     string `json:"id"`
	Chunks int    `json:"chunks"`
	Size   int    `json:"size"`
}

// Snapshots creates the topic of window state when missing and returns
// the store.
func (q *Queue) Snapshots(ctx context.Context) (*Snapshots, error) {
	topic := q.opts.Topic + WindowsSuffix
	if err := q.ensureStateTopic(ctx, topic, q.opts.Partitions, []kafka.ConfigEntry{
		{ConfigName: "cleanup.policy", ConfigValue: "compact"},
		// Compaction works on closed segments: close one an hour.
		{ConfigName: "segment.ms", ConfigValue: "3600000"},
	}); err != nil {
		return nil, err
	}
	s := &Snapshots{q: q, topic: topic, chunk: q.opts.BatchBytes - recordSlack}
	s.w = &kafka.Writer{Addr: kafka.TCP(q.opts.Brokers...), Topic: topic, Transport: q.tr,
		Balancer:     kafka.BalancerFunc(byPartitionKey),
		RequiredAcks: kafka.RequireAll, Compression: kafka.Lz4,
		BatchBytes: int64(q.opts.BatchBytes), BatchSize: 100, BatchTimeout: time.Millisecond,
		MaxAttempts: 1, WriteTimeout: 30 * time.Second}
	q.onClose(s.w.Close)
	return s, nil
}

// ensureStateTopic creates a topic of shared state when missing and checks
// that it has at least parts partitions.
func (q *Queue) ensureStateTopic(ctx context.Context, topic string, parts int, cfg []kafka.ConfigEntry) error {
	res, err := q.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: topic, NumPartitions: parts, ReplicationFactor: q.opts.Replication, ConfigEntries: cfg}}})
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	if terr := res.Errors[topic]; terr != nil && !errors.Is(terr, kafka.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", topic, terr)
	}
	md, err := q.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return fmt.Errorf("read topic %s: %w", topic, err)
	}
	for _, t := range md.Topics {
		if t.Error != nil {
			return fmt.Errorf("read topic %s: %w", topic, t.Error)
		}
		if len(t.Partitions) < parts {
			return fmt.Errorf("topic %s has %d partitions, want %d", topic, len(t.Partitions), parts)
		}
	}
	return nil
}

// byPartitionKey sends a message to the partition its key starts with
// ("N/...").
func byPartitionKey(m kafka.Message, partitions ...int) int {
	n, _, _ := strings.Cut(string(m.Key), "/")
	p, err := strconv.Atoi(n)
	if err != nil || p < 0 || p >= len(partitions) {
		return partitions[0]
	}
	return partitions[p]
}

// Save writes the state of partition p: its chunks, then the manifest.
func (s *Snapshots) Save(ctx context.Context, p int, data []byte) error {
	var idb [8]byte
	rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	prefix := strconv.Itoa(p) + "/"
	var msgs []kafka.Message
	for i := 0; i == 0 || i*s.chunk < len(data); i++ {
		part := data[i*s.chunk : min((i+1)*s.chunk, len(data))]
		msgs = append(msgs, kafka.Message{Key: []byte(prefix + "c" + strconv.Itoa(i)), Value: part,
			Headers: []kafka.Header{{Key: headerSnapshot, Value: []byte(id)}, {Key: headerChunk, Value: []byte(strconv.Itoa(i))}}})
	}
	m, _ := json.Marshal(manifest{ID: id, Chunks: len(msgs), Size: len(data)})
	msgs = append(msgs, kafka.Message{Key: []byte(prefix + "m"), Value: m})
	if err := s.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("save window state of partition %d: %w", p, err)
	}
	return nil
}

// Load returns the state saved last for partition p, nil when there is
// none. A save cut short (no manifest at the end) reads as an error.
func (s *Snapshots) Load(ctx context.Context, p int) ([]byte, error) {
	fail := func(err error) ([]byte, error) {
		return nil, fmt.Errorf("load window state of partition %d: %w", p, err)
	}
	offs, err := s.q.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		s.topic: {kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p)}}})
	if err != nil {
		return fail(err)
	}
	var first, end int64
	for _, po := range offs.Topics[s.topic] {
		if po.Error != nil {
			return fail(po.Error)
		}
		first, end = po.FirstOffset, po.LastOffset
	}
	if end <= first {
		return nil, nil
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: s.q.opts.Brokers, Topic: s.topic, Partition: p,
		Dialer: s.q.dialer, MinBytes: 1, MaxBytes: 2 * s.q.opts.BatchBytes, MaxWait: 250 * time.Millisecond})
	defer r.Close()
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := r.SetOffset(end - 1); err != nil {
		return fail(err)
	}
	last, err := r.FetchMessage(fctx)
	if err != nil {
		return fail(err)
	}
	var man manifest
	if string(last.Key) != strconv.Itoa(p)+"/m" || json.Unmarshal(last.Value, &man) != nil || man.Chunks < 1 {
		return fail(fmt.Errorf("the last message at %d is not a manifest: a save was cut short", last.Offset))
	}
	// The chunks come just before the manifest; compaction and a retried
	// write may move them further back.
	for _, back := range []int64{int64(man.Chunks), 4*int64(man.Chunks) + 8} {
		from := max(first, last.Offset-back)
		data, ok, err := s.read(fctx, r, from, last.Offset, man)
		if err != nil {
			return fail(err)
		}
		if ok {
			return data, nil
		}
		if from == first {
			break
		}
	}
	return fail(fmt.Errorf("chunks of save %s missing before offset %d", man.ID, last.Offset))
}

// read collects the chunks of the save man from offsets [from, to).
func (s *Snapshots) read(ctx context.Context, r *kafka.Reader, from, to int64, man manifest) ([]byte, bool, error) {
	if err := r.SetOffset(from); err != nil {
		return nil, false, err
	}
	chunks := make([][]byte, man.Chunks)
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return nil, false, err
		}
		if m.Offset >= to {
			break
		}
		var id string
		i := -1
		for _, h := range m.Headers {
			switch h.Key {
			case headerSnapshot:
				id = string(h.Value)
			case headerChunk:
				i, _ = strconv.Atoi(string(h.Value))
			}
		}
		if id == man.ID && i >= 0 && i < len(chunks) {
			chunks[i] = m.Value
		}
		if m.Offset == to-1 {
			break
		}
	}
	out := make([]byte, 0, man.Size)
	for _, c := range chunks {
		if c == nil {
			return nil, false, nil
		}
		out = append(out, c...)
	}
	if len(out) != man.Size {
		return nil, false, fmt.Errorf("save %s is %d bytes, its manifest says %d", man.ID, len(out), man.Size)
	}
	return out, true, nil
}
