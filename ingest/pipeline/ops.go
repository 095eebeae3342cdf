package pipeline

import (
	"io"
	"net/http"
	"net/http/pprof"

	"github.com/VictoriaMetrics/metrics"
)

// opsHandler serves /metrics, /healthz and /readyz, and with Config.Pprof
// Go's profiles under /debug/pprof/. Probes read atomics only: a slow
// batch must never make the kubelet think the process is stuck.
func (s *Server) opsHandler() http.Handler {
	mux := http.NewServeMux()
	if s.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		s.set.WritePrometheus(w)
		metrics.WriteProcessMetrics(w)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case !s.recv.Ready():
			http.Error(w, "not ready: webhook not accepting (starting or draining)", http.StatusServiceUnavailable)
		case !s.consuming.Load():
			http.Error(w, "not ready: detection not running", http.StatusServiceUnavailable)
		default:
			io.WriteString(w, "ok\n")
		}
	})
	return mux
}
