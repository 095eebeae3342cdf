package sinks_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/sinks"
)

// TestDispatcher_WaitDelivered: while one sink is down, WaitDelivered
// runs out of time naming it; once it is back, WaitDelivered returns only
// after every sink has everything (a sink whose filter drops every alert
// counts as done).
func TestDispatcher_WaitDelivered(t *testing.T) {
	durable := sinks.DurableOptions{AckWait: time.Second, FetchWait: 50 * time.Millisecond}
	for _, tc := range []struct {
		name    string
		durable bool
		// behind is how the error names the sink that is down.
		behind string
	}{
		{"memory", false, "sink down: "},
		{"durable", true, "sink down, consumer sink-down: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 200
			back := make(chan struct{})
			down := newEndpoint(n, func() int {
				select {
				case <-back:
					return http.StatusOK
				default:
					return http.StatusServiceUnavailable
				}
			})
			up := newEndpoint(n, func() int { return http.StatusOK })
			ds, us := httptest.NewServer(down), httptest.NewServer(up)
			defer ds.Close()
			defer us.Close()
			none := hookSink("none", us.URL)
			none.MinSeverity = detect.SeverityCritical
			cfg := sinks.Config{Sinks: []sinks.SinkConfig{hookSink("down", ds.URL), hookSink("up", us.URL), none}}
			var opts []sinks.Option
			if tc.durable {
				_, js := startJetStream(t, t.TempDir())
				opts = append(opts, sinks.WithDurable(js, durable))
			}
			d, err := sinks.Build(t.Context(), cfg, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close(context.Background())
			if err := d.Dispatch(t.Context(), manyAlerts(n)...); err != nil {
				t.Fatal(err)
			}

			// Long enough for the sink that filters everything to catch up
			// on a loaded machine; the sink that is down never does.
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			err = d.WaitDelivered(ctx)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), tc.behind) {
				t.Fatalf("WaitDelivered with a sink down = %v, want a deadline error naming %q", err, tc.behind)
			}
			if strings.Contains(err.Error(), "sink none") {
				t.Errorf("WaitDelivered names the sink that filters every alert: %v", err)
			}

			close(back)
			ctx, cancel = context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			if err := d.WaitDelivered(ctx); err != nil {
				t.Fatal(err)
			}
			if down.count() != n || up.count() != n {
				t.Errorf("WaitDelivered returned with %d and %d of %d alerts delivered", down.count(), up.count(), n)
			}
		})
	}
}

func TestDispatcher_WaitDelivered_doneContext(t *testing.T) {
	d, err := sinks.Build(t.Context(), sinks.Config{Sinks: []sinks.SinkConfig{{Name: "out", Type: "stdout"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(t.Context())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := d.WaitDelivered(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitDelivered(cancelled) = %v", err)
	}
}

// TestDispatcher_RecentStored reads the tail of VIGIL_ALERTS over more
// than one fetch, skipping a message that is not an alert.
func TestDispatcher_RecentStored(t *testing.T) {
	_, js := startJetStream(t, t.TempDir())
	ok := httptest.NewServer(newEndpoint(0, func() int { return http.StatusOK }))
	defer ok.Close()
	d, err := sinks.Build(t.Context(), sinks.Config{Sinks: []sinks.SinkConfig{hookSink("hook", ok.URL)}},
		sinks.WithDurable(js, sinks.DurableOptions{AckWait: time.Second, FetchWait: 50 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	if got, err := d.RecentStored(t.Context(), 10); err != nil || got != nil {
		t.Fatalf("RecentStored on an empty stream = %v, %v", got, err)
	}
	alerts := manyAlerts(1200)
	if err := d.Dispatch(t.Context(), alerts[:600]...); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), sinks.AlertSubjectPrefix+"junk", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	if err := d.Dispatch(t.Context(), alerts[600:]...); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		n     int
		first int // index in alerts of the first one returned
		want  int
	}{
		{0, 0, 0},
		{1, 1199, 1},
		{1000, 201, 999}, // the junk message is one of the last 1000
		{5000, 0, 1200},
	} {
		got, err := d.RecentStored(t.Context(), tc.n)
		if err != nil {
			t.Fatalf("RecentStored(%d): %v", tc.n, err)
		}
		if len(got) != tc.want {
			t.Fatalf("RecentStored(%d) returned %d alerts, want %d", tc.n, len(got), tc.want)
		}
		for i, a := range got {
			if want := alerts[tc.first+i]; a.Fingerprint != want.Fingerprint || a.Rule != want.Rule {
				t.Fatalf("RecentStored(%d)[%d] = %+v, want %s %s", tc.n, i, a, want.Fingerprint, want.Rule)
			}
		}
	}
}

func TestDispatcher_RecentStored_memory(t *testing.T) {
	d, err := sinks.Build(t.Context(), sinks.Config{Sinks: []sinks.SinkConfig{{Name: "out", Type: "stdout"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(t.Context())
	if got, err := d.RecentStored(t.Context(), 10); got != nil || err != nil {
		t.Errorf("RecentStored in memory mode = %v, %v", got, err)
	}
}
