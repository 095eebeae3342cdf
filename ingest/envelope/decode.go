package envelope

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"github.com/vigil-k8s/vigil/ingest"
)

// Item is one audit event read from an envelope.
type Item struct {
	// Data is the event's JSON; it belongs to the Item.
	Data []byte
	// Cluster is the cluster the envelope names, else Decoder.Cluster.
	Cluster string
	// Origin says where the event was read, such as "f.json:3: logEvents[2]".
	Origin string
	// AuditID and Stage may share Data's bytes.
	AuditID  string
	Stage    string
	Provider Format
	// Truncated is set when the provider cut the event; Lost is the field
	// the cut went through (the fields after it are lost too).
	Truncated bool
	Lost      string
}

// Entry returns the item as a queue entry.
func (it Item) Entry() ingest.Entry {
	return ingest.Entry{Record: ingest.Record{Data: it.Data, Cluster: it.Cluster, Origin: it.Origin},
		Key: ingest.DedupKey(it.AuditID, it.Stage)}
}

// Decoder turns envelopes into audit events. It is not safe for concurrent
// use.
type Decoder struct {
	// Format restricts the envelopes accepted (Auto: all, and raw audit
	// events).
	Format Format
	// Cluster names the cluster of events whose envelope names none.
	Cluster string
	// Item receives every event; Bad every record that holds no usable
	// event (with the record's bytes, possibly cut); Skip every record
	// that is not a Kubernetes audit event by design (CloudWatch control
	// messages, other log categories and services). An error returned by
	// Item or Bad stops the decoding and is returned.
	Item func(Item) error
	Bad  func(origin string, err error, data []byte) error
	Skip func(origin, reason string)

	// Out, when set, is where events are written: the items' Data are
	// slices of it (a reader hands each batch an arena this way).
	Out []byte

	parsers [3]fastjson.Parser // by nesting: file value, wrapped payload, inner payload
	msg     fastjson.Parser
	// cw and cwBuf hold the log events fastCloudWatch read and their
	// messages.
	cw    []cwEvent
	cwBuf []byte
	// gke holds what fastGKE read; gkeBuf the strings it unescaped.
	gke    gkeFields
	gkeBuf []byte
	// The last cluster each one-pass reader found, which the next record
	// most likely names too.
	gkeCluster, aksCluster lastCluster
	arena                  fastjson.Arena
	zr                     *gzip.Reader
}

// skippedObject is what AKS writes in place of a request or response
// object too big to log.
const skippedObject = "skipped-too-big-size-object"

// ErrNotEnvelope wraps the reason a value is neither a known envelope nor
// an audit event.
var ErrNotEnvelope = errors.New("not an audit event or a known envelope")

// meta is what an envelope says about the event it carries.
type meta struct {
	provider Format
	origin   string
	cluster  string
	record   string
	// at is the envelope's time for the event, used for an event whose
	// own timestamps were cut off.
	at time.Time
}

// Value decodes one JSON value: an envelope, an array of them, or (with
// Format Auto) a raw audit event or EventList. cut says the value was cut
// short (a provider limit or an interrupted writer).
func (d *Decoder) Value(data []byte, origin string, cut bool) error {
	return d.value(data, origin, cut, 0)
}

func (d *Decoder) value(data []byte, origin string, cut bool, depth int) error {
	if depth >= len(d.parsers) {
		return d.bad(origin, fmt.Errorf("%w: envelopes nested too deep", ErrNotEnvelope), data)
	}
	if !cut && (d.Format == Auto || d.Format == "" || d.Format == EKS) {
		if ok, err := d.fastCloudWatch(data, origin); ok {
			return err
		}
	}
	if !cut && (d.Format == Auto || d.Format == "" || d.Format == AKS) {
		if ok, err := d.fastAKS(data, origin); ok {
			return err
		}
	}
	if !cut && (d.Format == Auto || d.Format == "" || d.Format == GKE) {
		if ok, err := d.fastGKE(data, origin); ok {
			return err
		}
	}
	v, err := d.parsers[depth].ParseBytes(data)
	if err != nil || cut {
		// Salvage what a cut document kept; only an envelope whose
		// payload sits under a known member can be read this way.
		fixed, lost, serr := salvage(data, func(k string) bool { return k == "protoPayload" || k == "properties" })
		if serr != nil {
			if err == nil {
				err = serr
			}
			return d.bad(origin, fmt.Errorf("%w: malformed JSON: %v", ErrNotEnvelope, err), data)
		}
		perr := err
		if v, err = d.parsers[depth].ParseBytes(fixed); err != nil {
			return d.bad(origin, fmt.Errorf("%w: malformed JSON: %v", ErrNotEnvelope, err), data)
		}
		return d.object(v, origin, &cutInfo{lost: lost, err: perr}, depth, data)
	}
	if v.Type() == fastjson.TypeArray {
		for i, el := range v.GetArray() {
			if err := d.object(el, fmt.Sprintf("%s: item %d", origin, i+1), nil, depth, nil); err != nil {
				return err
			}
		}
		return nil
	}
	return d.object(v, origin, nil, depth, data)
}

// cutInfo describes an envelope cut short: the member the cut went
// through, and the parser's error (nil when the reader saw the cut).
type cutInfo struct {
	lost string
	err  error
}

// malformed says what is wrong with a cut value that is no envelope.
func (c *cutInfo) malformed() error {
	if c.err != nil {
		return fmt.Errorf("%w: malformed JSON: %v", ingest.ErrNotEvent, c.err)
	}
	return fmt.Errorf("%w: malformed JSON: cut in %q", ingest.ErrNotEvent, c.lost)
}

func (d *Decoder) object(v *fastjson.Value, origin string, cut *cutInfo, depth int, raw []byte) error {
	o, err := v.Object()
	if err != nil {
		return d.bad(origin, fmt.Errorf("%w: want a JSON object, got %s", ErrNotEnvelope, v.Type()), raw)
	}
	has := func(k string) bool { return o.Get(k) != nil }
	allow := func(f Format) bool { return d.Format == Auto || d.Format == "" || d.Format == f }
	switch {
	case has("messageType") && allow(EKS):
		return d.cloudWatchMessage(v, origin)
	case has("awslogs") && allow(EKS):
		return d.awsLogs(v, origin, depth)
	case has("logEvents") && allow(EKS):
		return d.cloudWatchMessage(v, origin)
	case has("events") && v.Get("events", "0", "message") != nil && allow(EKS):
		return d.filterLogEvents(v, origin)
	case has("records") && v.Get("records", "0", "data") != nil && allow(EKS):
		return d.firehoseRequest(v, origin, depth)
	case has("records") && allow(AKS):
		for i, r := range v.GetArray("records") {
			if err := d.aksRecord(r, d.origin(origin, "records", i), nil); err != nil {
				return err
			}
		}
		return nil
	case has("category") && has("properties") && allow(AKS):
		return d.aksRecord(v, origin, cut)
	case has("protoPayload") && allow(GKE):
		return d.gkeEntry(v, origin, cut)
	case has("message") && v.Get("message", "data") != nil && allow(GKE):
		// A Pub/Sub push request or a saved pull message.
		data, err := base64.StdEncoding.DecodeString(string(v.GetStringBytes("message", "data")))
		if err != nil {
			return d.bad(origin, fmt.Errorf("Pub/Sub message data: %w", err), raw)
		}
		return d.value(data, origin, false, depth+1)
	case string(v.GetStringBytes("kind")) == "EventList" && (d.Format == Auto || d.Format == ""):
		for i, it := range v.GetArray("items") {
			if err := d.passthrough(it, fmt.Sprintf("%s: item %d", origin, i+1)); err != nil {
				return err
			}
		}
		return nil
	case has("auditID") && d.Format == EKS:
		// A bare CloudWatch message (Firehose with message extraction).
		return d.auditMessage(v.MarshalTo(nil), meta{provider: EKS, origin: origin})
	case has("auditID") && (d.Format == Auto || d.Format == ""):
		if cut != nil {
			return d.bad(origin, cut.malformed(), raw)
		}
		return d.passthrough(v, origin)
	}
	if cut != nil {
		return d.bad(origin, cut.malformed(), raw)
	}
	if d.Format != Auto && d.Format != "" {
		return d.bad(origin, fmt.Errorf("%w: not a %s envelope", ErrNotEnvelope, strings.ToUpper(string(d.Format))), raw)
	}
	return d.bad(origin, fmt.Errorf("%w (EKS, GKE or AKS)", ErrNotEnvelope), raw)
}

// passthrough hands on a raw audit event unchanged.
func (d *Decoder) passthrough(v *fastjson.Value, origin string) error {
	return d.Item(Item{Data: d.emit(func(b []byte) []byte { return v.MarshalTo(b) }), Cluster: d.Cluster, Origin: origin,
		AuditID: string(v.GetStringBytes("auditID")), Stage: string(v.GetStringBytes("stage"))})
}

// auditMessage reads an audit event that a provider carried as text (EKS,
// AKS): a cut one is rebuilt from the fields before the cut, and every one
// is annotated with where it came from.
func (d *Decoder) auditMessage(msg []byte, m meta) error {
	cut := false
	if bytes.HasSuffix(msg, []byte(EKSTruncatedMarker)) {
		msg, cut = msg[:len(msg)-len(EKSTruncatedMarker)], true
	}
	if !cut {
		if it, ok := d.fastMessage(msg, m); ok {
			it.Cluster = m.clusterOr(d.Cluster)
			return d.Item(it)
		}
	}
	lost := ""
	v, err := d.msg.ParseBytes(msg)
	if err != nil || cut {
		fixed, l, serr := salvage(msg, nil)
		if serr != nil {
			if err == nil {
				err = serr
			}
			return d.bad(m.origin, fmt.Errorf("%w: %s record holds no readable audit event: %v", ingest.ErrNotEvent, strings.ToUpper(string(m.provider)), err), msg)
		}
		if v, err = d.msg.ParseBytes(fixed); err != nil {
			return d.bad(m.origin, fmt.Errorf("%w: %v", ingest.ErrNotEvent, err), msg)
		}
		cut, lost = true, l
	}
	if v.Type() != fastjson.TypeObject {
		return d.bad(m.origin, fmt.Errorf("%w: want a JSON object, got %s", ingest.ErrNotEvent, v.Type()), msg)
	}
	// AKS replaces an object too big to log by a string.
	for _, k := range []string{"requestObject", "responseObject"} {
		if string(v.GetStringBytes(k)) == skippedObject {
			v.Del(k)
			cut = true
			if lost == "" {
				lost = k
			}
		}
	}
	id, stage := v.GetStringBytes("auditID"), v.GetStringBytes("stage")
	if len(id) == 0 {
		reason := "missing auditID"
		if cut {
			reason = "cut before its auditID"
		}
		return d.bad(m.origin, fmt.Errorf("%w: %s", ingest.ErrNotEvent, reason), msg)
	}
	var data []byte
	if !cut {
		data = d.spliceAnnotations(msg, v, m)
	}
	if data == nil {
		d.arena.Reset()
		ann := v.Get("annotations")
		if ann == nil || ann.Type() != fastjson.TypeObject {
			ann = d.arena.NewObject()
			v.Set("annotations", ann)
		}
		d.annotate(ann, m, cut)
		if cut && v.Get("requestReceivedTimestamp") == nil && v.Get("stageTimestamp") == nil && !m.at.IsZero() {
			v.Set("stageTimestamp", d.arena.NewString(m.at.UTC().Format(time.RFC3339Nano)))
		}
		data = d.emit(func(b []byte) []byte { return v.MarshalTo(b) })
	}
	return d.Item(Item{Data: data, Cluster: m.clusterOr(d.Cluster), Origin: m.origin,
		AuditID: string(id), Stage: string(stage), Provider: m.provider, Truncated: cut, Lost: lost})
}

// lastCluster remembers the cluster name of the last record.
type lastCluster struct{ key, name string }

// get returns the cluster name of a record that says key, from name(key)
// (which must name "" for "").
func (c *lastCluster) get(key []byte, name func(string) string) string {
	if string(key) != c.key {
		c.key = string(key)
		c.name = name(c.key)
	}
	return c.name
}

func (m meta) clusterOr(def string) string {
	if m.cluster != "" {
		return m.cluster
	}
	return def
}

func (d *Decoder) bad(origin string, err error, data []byte) error {
	if d.Bad == nil {
		return nil
	}
	return d.Bad(origin, err, data)
}

func (d *Decoder) skip(origin, reason string) {
	if d.Skip != nil {
		d.Skip(origin, reason)
	}
}

// gunzip returns data decompressed when it is gzip, else data.
func (d *Decoder) gunzip(data []byte) ([]byte, error) {
	if len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b {
		return data, nil
	}
	var err error
	if d.zr == nil {
		d.zr, err = gzip.NewReader(bytes.NewReader(data))
	} else {
		err = d.zr.Reset(bytes.NewReader(data))
	}
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	out, err := io.ReadAll(d.zr)
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return out, nil
}

// Payload decodes one message of a live source: gzip-compressed or not,
// one JSON value or several (JSON lines).
func (d *Decoder) Payload(data []byte, origin string) error {
	return d.payload(data, origin, 0)
}

func (d *Decoder) payload(data []byte, origin string, depth int) error {
	data, err := d.gunzip(data)
	if err != nil {
		return d.bad(origin, err, data)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return d.bad(origin, fmt.Errorf("%w: empty message", ErrNotEnvelope), data)
	}
	if i := bytes.IndexByte(trimmed, '\n'); i < 0 || trimmed[0] == '[' || isPretty(trimmed[:i]) {
		return d.value(trimmed, origin, false, depth)
	}
	for n, line := range bytes.Split(trimmed, []byte{'\n'}) {
		if line = bytes.TrimSpace(line); len(line) > 0 {
			if err := d.value(line, origin+": line "+strconv.Itoa(n+1), false, depth); err != nil {
				return err
			}
		}
	}
	return nil
}

func isPretty(firstLine []byte) bool {
	s := string(bytes.TrimSpace(firstLine))
	return s == "{" || s == "["
}
