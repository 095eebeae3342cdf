// Package eks holds the live sources of EKS audit logs, which EKS writes to
// the CloudWatch Logs group /aws/eks/CLUSTER/cluster (streams
// kube-apiserver-audit-*): an HTTP endpoint that a Firehose stream fed by
// a subscription filter delivers to, and a poller of the log group
// (FilterLogEvents) with a persisted cursor.
package eks

import (
	"compress/gzip"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/envelope"
	"github.com/vigil-k8s/vigil/ingest/pipeline"
	"github.com/vigil-k8s/vigil/ingest/sources"
)

// FirehoseConfig configures the Firehose HTTP endpoint destination.
type FirehoseConfig struct {
	sources.Common
	// Listen is the address to serve on; Path the request path (default
	// /firehose).
	Listen, Path string
	// AccessKey must match the X-Amz-Firehose-Access-Key header (the
	// access key set on the Firehose destination).
	AccessKey string
	// TLSCert and TLSKey serve HTTPS (Firehose delivers only to https
	// URLs: without them, terminate TLS in front of vigil).
	TLSCert, TLSKey string
	// MaxBodyBytes bounds a request (default 64 MiB, Firehose's largest
	// buffer).
	MaxBodyBytes int64
}

// Firehose receives Firehose HTTP endpoint deliveries. It is a
// pipeline.Source and an http.Handler.
type Firehose struct {
	cfg FirehoseConfig
	h   *sources.Handler
	pub pipeline.Publisher
	ctx context.Context
}

var _ pipeline.Source = (*Firehose)(nil)

// NewFirehose checks the configuration.
func NewFirehose(cfg FirehoseConfig) (*Firehose, error) {
	if cfg.Listen == "" {
		return nil, errors.New("eks firehose source: listen is required")
	}
	if cfg.AccessKey == "" {
		return nil, errors.New("eks firehose source: access_key is required (the key set on the Firehose destination)")
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("eks firehose source: set both tls_cert and tls_key, or neither")
	}
	if cfg.Path == "" {
		cfg.Path = "/firehose"
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 64 << 20
	}
	if cfg.Name == "" {
		cfg.Name = "eks-firehose"
	}
	return &Firehose{cfg: cfg, h: sources.NewHandler(envelope.EKS, cfg.Common)}, nil
}

// Name implements pipeline.Source.
func (f *Firehose) Name() string { return f.h.Name() }

// Run serves until ctx is done, then finishes the requests in progress.
func (f *Firehose) Run(ctx context.Context, pub pipeline.Publisher) error {
	l, err := net.Listen("tcp", f.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", f.cfg.Listen, err)
	}
	f.pub, f.ctx = pub, ctx
	mux := http.NewServeMux()
	mux.Handle(f.cfg.Path, f)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute, WriteTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() {
		if f.cfg.TLSCert != "" {
			errc <- srv.ServeTLS(l, f.cfg.TLSCert, f.cfg.TLSKey)
		} else {
			errc <- srv.Serve(l)
		}
	}()
	f.h.Logger().Info("receiving EKS audit logs from Firehose", "address", l.Addr().String(), "path", f.cfg.Path)
	select {
	case err := <-errc:
		return fmt.Errorf("firehose endpoint: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return nil
}

// firehoseRequest is the body Firehose POSTs.
type firehoseRequest struct {
	RequestID string `json:"requestId"`
	Timestamp int64  `json:"timestamp"`
	Records   []struct {
		Data string `json:"data"`
	} `json:"records"`
}

// ServeHTTP answers 200 with the documented body only once the request's
// events are stored; any other answer makes Firehose retry the request.
func (f *Firehose) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := r.Header.Get("X-Amz-Firehose-Request-Id")
	if r.Method != http.MethodPost {
		f.answer(w, http.StatusMethodNotAllowed, reqID, "method "+r.Method+" not allowed: Firehose POSTs")
		return
	}
	key := r.Header.Get("X-Amz-Firehose-Access-Key")
	if subtle.ConstantTimeCompare([]byte(key), []byte(f.cfg.AccessKey)) != 1 {
		f.answer(w, http.StatusUnauthorized, reqID, "X-Amz-Firehose-Access-Key does not match the configured access key")
		return
	}
	var body io.Reader = http.MaxBytesReader(w, r.Body, f.cfg.MaxBodyBytes)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			f.answer(w, http.StatusBadRequest, reqID, "gzip body: "+err.Error())
			return
		}
		body = io.LimitReader(zr, 4*f.cfg.MaxBodyBytes)
	}
	var req firehoseRequest
	if err := json.NewDecoder(body).Decode(&req); err != nil {
		f.answer(w, http.StatusBadRequest, reqID, "request body is not a Firehose request: "+err.Error())
		return
	}
	if req.RequestID != "" {
		reqID = req.RequestID
	}
	var b sources.Batch
	for i, rec := range req.Records {
		origin := fmt.Sprintf("firehose:%s/records[%d]", reqID, i)
		data, err := base64.StdEncoding.DecodeString(rec.Data)
		if err != nil {
			b.Bad = append(b.Bad, ingest.DeadLetter{Cluster: f.cfg.Cluster, Reason: origin + ": record data is not base64: " + err.Error(), Data: []byte(rec.Data)})
			continue
		}
		f.h.DecodeFirehose(&b, data, origin)
	}
	// Stop waiting when the source stops or Firehose gives up.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(f.ctx, cancel)
	defer stop()
	if err := f.h.Deliver(ctx, f.pub, &b); err != nil {
		f.answer(w, http.StatusServiceUnavailable, reqID, "events not stored: "+err.Error())
		return
	}
	f.answer(w, http.StatusOK, reqID, "")
}

// answer writes Firehose's response body: requestId and timestamp, and
// errorMessage when the request failed.
func (f *Firehose) answer(w http.ResponseWriter, status int, reqID, msg string) {
	body := map[string]any{"requestId": reqID, "timestamp": time.Now().UnixMilli()}
	if msg != "" {
		body["errorMessage"] = msg
		f.h.Logger().Warn("firehose request refused", "status", status, "request", reqID, "err", msg)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}
