// Package webhook receives the kube-apiserver's audit webhook: POSTs of an
// audit.k8s.io EventList (or a single Event) that it checks, splits into
// events and publishes to a queue, answering 200 only once the queue has
// stored them.
//
// Whole-request failures get a specific status with a one-line reason and
// a labelled counter; the apiserver retries every non-2xx answer, so 429
// and 503 are safe back-pressure. One bad item inside a valid EventList
// goes to the dead-letter store and the rest is accepted.
package webhook

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/internal/gate"
)

// Publisher stores events durably; ingest.Queue satisfies it. Publish
// blocks until the entries are stored, is safe for concurrent use, and
// does not keep the entries' memory after it returns.
type Publisher interface {
	Publish(ctx context.Context, entries []ingest.Entry) error
}

// Defaults for Options.
const (
	DefaultPath          = "/audit"
	DefaultMaxBodyBytes  = 64 << 20
	DefaultMaxEventBytes = 4 << 20
	DefaultRetryAfter    = 5 * time.Second
)

// Options configure a Receiver.
type Options struct {
	// Queue receives accepted events (required).
	Queue Publisher
	// DeadLetters receives refused items of valid requests (required).
	DeadLetters ingest.DeadLetterer
	// Path is where the webhook listens (default /audit); Path/{cluster}
	// names the cluster, Path alone uses DefaultCluster.
	Path           string
	DefaultCluster string
	// MaxBodyBytes bounds a request body (default 64 MiB: a default
	// apiserver batch of 400 events with request and response bodies).
	MaxBodyBytes int64
	// MaxEventBytes bounds one event; a larger one is dead-lettered
	// (default 4 MiB, and at most what the queue takes).
	MaxEventBytes int
	// Tokens are the accepted bearer tokens. When Tokens is empty and
	// ClientCerts is false, requests are not authenticated.
	Tokens []string
	// ClientCerts accepts requests that presented a client certificate the
	// TLS layer verified (tls.Config.ClientCAs).
	ClientCerts bool
	// RetryAfter is the Retry-After of 429 and 503 answers (default 5s).
	RetryAfter time.Duration
	Logger     *slog.Logger
	Metrics    *metrics.Set
	// Now is the clock for last-seen times (default time.Now).
	Now func() time.Time
}

// Receiver is the webhook's http.Handler.
type Receiver struct {
	opts   Options
	log    *slog.Logger
	tokens [][]byte
	ready  atomic.Bool
	// requests lets requests in until Drain, which waits for those inside.
	requests gate.Gate
	decoders sync.Pool
	bufs     sync.Pool

	mu       sync.Mutex
	lastSeen map[string]time.Time
	latency  *metrics.Histogram
}

var clusterName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// New returns a Receiver that is not ready: call SetReady(true) once the
// queue and detection run.
func New(opts Options) (*Receiver, error) {
	if opts.Queue == nil || opts.DeadLetters == nil {
		return nil, errors.New("webhook: queue and dead-letter store are required")
	}
	if opts.Path == "" {
		opts.Path = DefaultPath
	}
	if !strings.HasPrefix(opts.Path, "/") || strings.HasSuffix(opts.Path, "/") {
		return nil, fmt.Errorf("webhook path %q must start and not end with /", opts.Path)
	}
	if opts.DefaultCluster != "" && !clusterName.MatchString(opts.DefaultCluster) {
		return nil, fmt.Errorf("cluster name %q: want letters, digits, '.', '_' or '-', at most 63", opts.DefaultCluster)
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxEventBytes <= 0 {
		opts.MaxEventBytes = DefaultMaxEventBytes
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = DefaultRetryAfter
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewSet()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Receiver{opts: opts, log: opts.Logger, lastSeen: map[string]time.Time{},
		latency: opts.Metrics.NewHistogram("vigil_webhook_request_duration_seconds")}
	for _, t := range opts.Tokens {
		if t = strings.TrimSpace(t); t != "" {
			r.tokens = append(r.tokens, []byte(t))
		}
	}
	return r, nil
}

// SetReady opens (or closes) the receiver; until then it answers 503.
func (r *Receiver) SetReady(ok bool) { r.ready.Store(ok) }

// Ready reports whether the receiver accepts events.
func (r *Receiver) Ready() bool { return r.ready.Load() && !r.requests.IsShut() }

// Drain makes new requests get 503 and waits until the requests in
// progress are answered or ctx is done.
func (r *Receiver) Drain(ctx context.Context) error {
	select {
	case <-r.requests.Shut():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("drain webhook: %w", ctx.Err())
	}
}

// LastSeen returns, per cluster, when events were last accepted.
func (r *Receiver) LastSeen() map[string]time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]time.Time, len(r.lastSeen))
	for k, v := range r.lastSeen {
		out[k] = v
	}
	return out
}

// Reasons for refused requests and items, the values of the reason label.
const (
	ReasonMethod       = "method"
	ReasonNotFound     = "not_found"
	ReasonUnauth       = "unauthenticated"
	ReasonForbidden    = "forbidden"
	ReasonContentType  = "content_type"
	ReasonEncoding     = "content_encoding"
	ReasonTooLarge     = "body_too_large"
	ReasonMalformed    = "malformed_json"
	ReasonKind         = "wrong_kind"
	ReasonAPIVersion   = "wrong_api_version"
	ReasonNotReady     = "not_ready"
	ReasonDraining     = "draining"
	ReasonQueueFull    = "queue_full"
	ReasonQueueClosed  = "queue_closed"
	ReasonQueueError   = "queue_error"
	ReasonReadError    = "read_error"
	ReasonDeadLetterKO = "dead_letter_error"
	ReasonBadEvent     = "bad_event"
	ReasonEventTooBig  = "event_too_large"
)

// refuse answers a whole-request failure and counts it.
func (r *Receiver) refuse(w http.ResponseWriter, cluster string, code int, reason, msg string) {
	r.opts.Metrics.GetOrCreateCounter(`vigil_webhook_rejected_requests_total{cluster="` + cluster + `",reason="` + reason + `"}`).Inc()
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(int((r.opts.RetryAfter+time.Second-1)/time.Second)))
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, "%s: %s\n", reason, oneLine(msg))
	if code >= 500 {
		r.log.Warn("webhook request refused", "cluster", cluster, "status", code, "reason", reason, "err", msg)
	} else {
		r.log.Debug("webhook request refused", "cluster", cluster, "status", code, "reason", reason, "err", msg)
	}
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// ServeHTTP implements http.Handler.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	defer func() { r.latency.UpdateDuration(start) }()
	admitted := r.requests.Enter()
	if admitted {
		defer r.requests.Leave()
	}

	cluster, ok := r.cluster(req.URL.Path)
	if !ok {
		r.refuse(w, "", http.StatusNotFound, ReasonNotFound, fmt.Sprintf("no webhook at %q; post to %s or %s/{cluster}", req.URL.Path, r.opts.Path, r.opts.Path))
		return
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		r.refuse(w, cluster, http.StatusMethodNotAllowed, ReasonMethod, "method "+req.Method+" not allowed, use POST")
		return
	}
	if code, reason, msg := r.authenticate(req); code != 0 {
		r.refuse(w, cluster, code, reason, msg)
		return
	}
	if !admitted {
		r.refuse(w, cluster, http.StatusServiceUnavailable, ReasonDraining, "vigil is shutting down, retry later")
		return
	}
	if !r.ready.Load() {
		r.refuse(w, cluster, http.StatusServiceUnavailable, ReasonNotReady, "vigil is starting, retry later")
		return
	}
	ct := req.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		r.refuse(w, cluster, http.StatusUnsupportedMediaType, ReasonContentType, fmt.Sprintf("content type %q, want application/json", ct))
		return
	}
	if ce := req.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		r.refuse(w, cluster, http.StatusUnsupportedMediaType, ReasonEncoding, fmt.Sprintf("content encoding %q not supported, send uncompressed JSON", ce))
		return
	}
	if req.ContentLength > r.opts.MaxBodyBytes {
		r.refuse(w, cluster, http.StatusRequestEntityTooLarge, ReasonTooLarge, fmt.Sprintf("body of %d bytes is over the limit of %d", req.ContentLength, r.opts.MaxBodyBytes))
		return
	}
	buf := r.getBuf()
	defer r.bufs.Put(buf)
	if req.ContentLength > 0 {
		// One allocation of the right size, not a doubling series, up to
		// a few MiB: a declared length is not yet data, and a client
		// must not make vigil allocate the whole limit for nothing.
		// ReadFrom wants room for a read beyond the end to see EOF.
		buf.Grow(int(min(req.ContentLength, maxPresize)) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, req.Body, r.opts.MaxBodyBytes)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			r.refuse(w, cluster, http.StatusRequestEntityTooLarge, ReasonTooLarge, fmt.Sprintf("body is over the limit of %d bytes", r.opts.MaxBodyBytes))
			return
		}
		r.refuse(w, cluster, http.StatusBadRequest, ReasonReadError, "read body: "+err.Error())
		return
	}
	dec, _ := r.decoders.Get().(*ingest.Decoder)
	if dec == nil {
		dec = new(ingest.Decoder)
	}
	defer r.decoders.Put(dec)
	items, code, reason, msg := parseBody(dec, buf.Bytes())
	if code != 0 {
		r.refuse(w, cluster, code, reason, msg)
		return
	}
	r.accept(req.Context(), w, cluster, items)
}

// maxPresize bounds how much of a declared Content-Length is allocated
// before the body arrives; a default apiserver batch is well under it.
const maxPresize = 4 << 20

func (r *Receiver) getBuf() *bytes.Buffer {
	if b, ok := r.bufs.Get().(*bytes.Buffer); ok {
		b.Reset()
		return b
	}
	return new(bytes.Buffer)
}

func (r *Receiver) cluster(path string) (string, bool) {
	if path == r.opts.Path {
		return r.opts.DefaultCluster, true
	}
	rest, ok := strings.CutPrefix(path, r.opts.Path+"/")
	if !ok || !clusterName.MatchString(rest) {
		return "", false
	}
	return rest, true
}

// authenticate returns a non-zero status when the request may not post.
func (r *Receiver) authenticate(req *http.Request) (int, string, string) {
	if len(r.tokens) == 0 && !r.opts.ClientCerts {
		return 0, "", ""
	}
	if r.opts.ClientCerts && req.TLS != nil && len(req.TLS.VerifiedChains) > 0 {
		return 0, "", ""
	}
	auth := req.Header.Get("Authorization")
	if auth == "" {
		return http.StatusUnauthorized, ReasonUnauth, "no client certificate and no bearer token"
	}
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || len(r.tokens) == 0 {
		return http.StatusUnauthorized, ReasonUnauth, "Authorization is not a bearer token accepted here"
	}
	// Compare with every token so the time taken does not say which one
	// came close.
	match := 0
	for _, t := range r.tokens {
		match |= subtle.ConstantTimeCompare([]byte(tok), t)
	}
	if match != 1 {
		return http.StatusForbidden, ReasonForbidden, "bearer token not accepted"
	}
	return 0, "", ""
}

// accept dead-letters the bad items, publishes the rest and answers.
func (r *Receiver) accept(ctx context.Context, w http.ResponseWriter, cluster string, items []item) {
	entries := make([]ingest.Entry, 0, len(items))
	var dead []ingest.DeadLetter
	salvaged, truncated := 0, 0
	for _, it := range items {
		if it.reason == "" && len(it.data) > r.opts.MaxEventBytes {
			detail := fmt.Sprintf("event %s is %d bytes, over the limit of %d", it.key, len(it.data), r.opts.MaxEventBytes)
			// The whole item is kept for a person; its metadata goes on
			// to detection, so that a padded object does not hide who
			// did what.
			meta, err := ingest.Truncate(it.data, r.opts.MaxEventBytes)
			if err == nil {
				entries = append(entries, ingest.Entry{Record: ingest.Record{Data: meta, Cluster: cluster}, Key: it.key})
				truncated++
				detail += "; its metadata was accepted without the bodies"
			} else {
				detail += "; its metadata could not be kept either: " + err.Error()
			}
			dead = append(dead, ingest.DeadLetter{Cluster: cluster, Reason: ReasonEventTooBig + ": " + detail, Data: it.data})
			continue
		}
		if it.reason != "" {
			dead = append(dead, ingest.DeadLetter{Cluster: cluster, Reason: it.reason + ": " + it.detail, Data: it.data})
			continue
		}
		if it.salvaged {
			salvaged++
		}
		entries = append(entries, ingest.Entry{Record: ingest.Record{Data: it.data, Cluster: cluster}, Key: it.key})
	}
	if len(dead) > 0 {
		// Stored before answering: an item the apiserver will not send
		// again must not vanish.
		if err := r.opts.DeadLetters.DeadLetter(ctx, dead); err != nil {
			r.refuse(w, cluster, http.StatusServiceUnavailable, ReasonDeadLetterKO, "store refused items: "+err.Error())
			return
		}
		for i, d := range dead {
			reason, _, _ := strings.Cut(d.Reason, ":")
			r.opts.Metrics.GetOrCreateCounter(`vigil_webhook_deadlettered_events_total{cluster="` + cluster + `",reason="` + reason + `"}`).Inc()
			if i < 3 {
				r.log.Warn("webhook item dead-lettered", "cluster", cluster, "reason", d.Reason)
			}
		}
	}
	if err := r.opts.Queue.Publish(ctx, entries); err != nil {
		switch {
		case errors.Is(err, ingest.ErrFull):
			r.refuse(w, cluster, http.StatusTooManyRequests, ReasonQueueFull, "queue full, retry later")
		case errors.Is(err, ingest.ErrClosed):
			r.refuse(w, cluster, http.StatusServiceUnavailable, ReasonQueueClosed, "queue closed, retry later")
		default:
			r.refuse(w, cluster, http.StatusServiceUnavailable, ReasonQueueError, err.Error())
		}
		return
	}
	r.opts.Metrics.GetOrCreateCounter(`vigil_webhook_received_events_total{cluster="` + cluster + `"}`).Add(len(entries))
	if salvaged > 0 {
		r.opts.Metrics.GetOrCreateCounter(`vigil_webhook_salvaged_events_total{cluster="` + cluster + `"}`).Add(salvaged)
		r.log.Warn("webhook events accepted whose JSON could not be decoded whole; detection reads their metadata",
			"cluster", cluster, "events", salvaged)
	}
	if truncated > 0 {
		r.opts.Metrics.GetOrCreateCounter(`vigil_webhook_truncated_events_total{cluster="` + cluster + `"}`).Add(truncated)
	}
	if len(entries) > 0 {
		r.mu.Lock()
		r.lastSeen[cluster] = r.opts.Now()
		r.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"accepted":%d,"deadLettered":%d}`+"\n", len(entries), len(dead))
}
