package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRun posts to a test webhook that checks each EventList and answers
// 200 or, for every third POST, 429; the report counts only the POSTs
// after the warm-up, and the accepted events only those answered 200.
func TestRun(t *testing.T) {
	var (
		mu    sync.Mutex
		ids   = map[string]bool{}
		posts atomic.Int64
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var list struct {
			Kind, APIVersion string
			Items            []struct {
				AuditID, Stage, StageTimestamp string
			}
		}
		if r.URL.Path != "/audit" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("POST to %s with content type %q", r.URL.Path, r.Header.Get("Content-Type"))
		}
		if err := json.NewDecoder(r.Body).Decode(&list); err != nil || list.Kind != "EventList" || list.APIVersion != "audit.k8s.io/v1" {
			t.Errorf("body: %v, kind %q, apiVersion %q", err, list.Kind, list.APIVersion)
		}
		if len(list.Items) != 50 {
			t.Errorf("%d events in a POST, want 50", len(list.Items))
		}
		mu.Lock()
		for _, it := range list.Items {
			if it.AuditID == "" || ids[it.AuditID] {
				t.Errorf("auditID %q empty or sent twice", it.AuditID)
			}
			if _, err := time.Parse(time.RFC3339Nano, it.StageTimestamp); err != nil {
				t.Errorf("stageTimestamp: %v", err)
			}
			ids[it.AuditID] = true
		}
		mu.Unlock()
		if posts.Add(1)%3 == 0 {
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Write([]byte(`{"accepted":50}`))
	}))
	defer srv.Close()

	var out bytes.Buffer
	o := options{url: srv.URL + "/audit", rate: 5000, batch: 50, conns: 4,
		duration: 600 * time.Millisecond, warmup: 400 * time.Millisecond}
	if err := run(t.Context(), o, &out); err != nil {
		t.Fatal(err)
	}
	report := out.String()
	num := func(re string) int {
		m := regexp.MustCompile(re).FindStringSubmatch(report)
		if m == nil {
			t.Fatalf("no %s in the report:\n%s", re, report)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	ok, refused := num(`200:(\d+)`), num(`429:(\d+)`)
	// 5000 events/s in POSTs of 50 is 100 POSTs/s: about 60 measured out
	// of about 100 sent.
	if measured := ok + refused; measured < 20 || measured > 70 || int64(measured) >= posts.Load() {
		t.Errorf("%d POSTs measured of %d sent, want about 60 of 100", measured, posts.Load())
	}
	if got := num(`accepted (\d+) events`); got != 50*ok {
		t.Errorf("accepted %d events, want %d (50 per POST answered 200)", got, 50*ok)
	}
	if !strings.Contains(report, "ack latency: p50 ") || !strings.Contains(report, "after 400ms of warm-up") {
		t.Errorf("report:\n%s", report)
	}
}
