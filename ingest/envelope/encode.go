package envelope

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/valyala/fastjson"
)

// EncodeOptions describe the cluster the envelopes name.
type EncodeOptions struct {
	Cluster string
	// Project and Location name a GKE cluster's project and region.
	Project, Location string
	// Account is the AWS account (EKS owner); Subscription and
	// ResourceGroup place an AKS cluster.
	Account, Subscription, ResourceGroup string
	// Cut applies the provider's size limit: EKS cuts a message over 256
	// KiB and marks it, AKS cuts properties.log at 16 KiB.
	Cut bool
	// EKSBatch is the number of log events per CloudWatch message
	// (default 100).
	EKSBatch int
}

func (o *EncodeOptions) defaults() {
	if o.Cluster == "" {
		o.Cluster = "cluster"
	}
	if o.Project == "" {
		o.Project = "project"
	}
	if o.Location == "" {
		o.Location = "europe-west1"
	}
	if o.Account == "" {
		o.Account = "123456789012"
	}
	if o.Subscription == "" {
		o.Subscription = "00000000-0000-0000-0000-000000000000"
	}
	if o.ResourceGroup == "" {
		o.ResourceGroup = "vigil"
	}
	if o.EKSBatch <= 0 {
		o.EKSBatch = 100
	}
}

// Encoder writes audit events in a provider's envelope, as the provider's
// export leaves them in files: EKS as concatenated gzip members of
// CloudWatch Logs subscription messages (a Firehose S3 object), GKE as
// LogEntry JSON lines (a Cloud Storage export), AKS as diagnostic records
// one per line (a storage account blob).
type Encoder struct {
	provider Format
	opts     EncodeOptions
	w        io.Writer
	bw       *bufio.Writer
	p        fastjson.Parser
	a        fastjson.Arena
	seen     map[string]bool
	eks      []CloudWatchEvent
	seq      int
	// Skipped counts events the provider never records (GKE:
	// RequestReceived) and Cut those cut to the provider's limit.
	Skipped, Cut int
}

// NewEncoder returns an Encoder writing to w.
func NewEncoder(w io.Writer, provider Format, opts EncodeOptions) (*Encoder, error) {
	if provider != EKS && provider != GKE && provider != AKS {
		return nil, fmt.Errorf("encode: unknown provider %q", provider)
	}
	opts.defaults()
	e := &Encoder{provider: provider, opts: opts, w: w, seen: map[string]bool{}}
	if provider != EKS {
		e.bw = bufio.NewWriterSize(w, 64<<10)
	}
	return e, nil
}

// Write encodes one audit event.
func (e *Encoder) Write(event []byte) error {
	switch e.provider {
	case EKS:
		ev, err := e.cloudWatchEvent(event)
		if err != nil {
			return err
		}
		e.eks = append(e.eks, ev)
		if len(e.eks) >= e.opts.EKSBatch {
			return e.flushEKS()
		}
		return nil
	case GKE:
		entry, ok, err := e.GKEEntry(event)
		if err != nil || !ok {
			return err
		}
		e.bw.Write(entry)
		return e.bw.WriteByte('\n')
	default:
		rec, err := e.AKSRecord(event)
		if err != nil {
			return err
		}
		e.bw.Write(rec)
		return e.bw.WriteByte('\n')
	}
}

// Close writes what is buffered.
func (e *Encoder) Close() error {
	if e.provider == EKS {
		return e.flushEKS()
	}
	return e.bw.Flush()
}

// CloudWatchEvent is one log event of a CloudWatch Logs subscription
// message.
type CloudWatchEvent struct {
	ID        string `json:"id"`
	Timestamp int64  `json:"timestamp"`
	Message   string `json:"message"`
}

func (e *Encoder) cloudWatchEvent(event []byte) (CloudWatchEvent, error) {
	v, err := e.p.ParseBytes(event)
	if err != nil {
		return CloudWatchEvent{}, fmt.Errorf("encode: %w", err)
	}
	// CloudWatch stamps a log event when the API server writes it: at the
	// stage's time.
	ts := eventTime(v, "stageTimestamp", "requestReceivedTimestamp")
	e.seq++
	msg := string(event)
	if limit := EKSMaxEventBytes - EKSEventOverhead; e.opts.Cut && len(msg) > limit {
		msg = msg[:limit-len(EKSTruncatedMarker)] + EKSTruncatedMarker
		e.Cut++
	}
	return CloudWatchEvent{ID: fmt.Sprintf("%020d%036d", ts.UnixMilli(), e.seq), Timestamp: ts.UnixMilli(), Message: msg}, nil
}

func eventTime(v *fastjson.Value, keys ...string) time.Time {
	for _, k := range keys {
		if t, err := time.Parse(time.RFC3339Nano, string(v.GetStringBytes(k))); err == nil {
			return t
		}
	}
	return time.Time{}
}

// cloudWatchMessage is a CloudWatch Logs subscription message, its members
// in the order AWS writes them.
type cloudWatchMessage struct {
	MessageType         string            `json:"messageType"`
	Owner               string            `json:"owner"`
	LogGroup            string            `json:"logGroup"`
	LogStream           string            `json:"logStream"`
	SubscriptionFilters []string          `json:"subscriptionFilters"`
	LogEvents           []CloudWatchEvent `json:"logEvents"`
}

// EKSMessage returns the CloudWatch Logs subscription DATA_MESSAGE of a
// cluster's audit events (uncompressed JSON; subscriptions gzip it).
func EKSMessage(opts EncodeOptions, events []CloudWatchEvent) []byte {
	opts.defaults()
	msg, _ := json.Marshal(cloudWatchMessage{MessageType: "DATA_MESSAGE", Owner: opts.Account,
		LogGroup: "/aws/eks/" + opts.Cluster + "/cluster", LogStream: "kube-apiserver-audit-0123456789abcdef0123456789abcdef",
		SubscriptionFilters: []string{"vigil"}, LogEvents: events})
	return msg
}

// EKSControlMessage is the heartbeat a subscription sends first.
func EKSControlMessage(opts EncodeOptions) []byte {
	opts.defaults()
	msg, _ := json.Marshal(cloudWatchMessage{MessageType: "CONTROL_MESSAGE", Owner: "CloudwatchLogs",
		SubscriptionFilters: []string{}, LogEvents: []CloudWatchEvent{{ID: "", Timestamp: time.Now().UnixMilli(),
			Message: "CWL CONTROL MESSAGE: Checking health of destination Firehose."}}})
	return msg
}

// Gzip compresses data as one gzip member.
func Gzip(data []byte) []byte {
	var b strings.Builder
	zw := gzip.NewWriter(&b)
	zw.Write(data)
	zw.Close()
	return []byte(b.String())
}

func (e *Encoder) flushEKS() error {
	if e.seq == len(e.eks) && len(e.eks) > 0 {
		if _, err := e.w.Write(Gzip(EKSControlMessage(e.opts))); err != nil {
			return err
		}
	}
	if len(e.eks) == 0 {
		return nil
	}
	_, err := e.w.Write(Gzip(EKSMessage(e.opts, e.eks)))
	e.eks = e.eks[:0]
	return err
}

// AKSRecord returns the diagnostic-settings record of an audit event.
func (e *Encoder) AKSRecord(event []byte) ([]byte, error) {
	v, err := e.p.ParseBytes(event)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	log := string(event)
	if e.opts.Cut && len(log) > AKSMaxLogBytes {
		log = log[:AKSMaxLogBytes]
		e.Cut++
	}
	return json.Marshal(map[string]any{
		"category": "kube-audit", "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
		"time": eventTime(v, "stageTimestamp", "requestReceivedTimestamp").UTC().Format(time.RFC3339Nano),
		"resourceId": fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.ContainerService/managedClusters/%s",
			e.opts.Subscription, e.opts.ResourceGroup, e.opts.Cluster),
		"properties": map[string]string{"log": log, "stream": "stdout", "pod": "kube-apiserver-5d8f9c7b6-x2x7q"},
	})
}

// AKSEventHubsBody wraps records the way diagnostic settings send them to
// Event Hubs.
func AKSEventHubsBody(records ...[]byte) []byte {
	raw := make([]json.RawMessage, len(records))
	for i, r := range records {
		raw[i] = r
	}
	b, _ := json.Marshal(map[string]any{"records": raw})
	return b
}
