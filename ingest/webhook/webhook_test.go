package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/memqueue"
	"github.com/vigil-k8s/vigil/ingest/tlsutil"
)

const token = "s3cret-token"

type fixture struct {
	srv     *httptest.Server
	q       *memqueue.Queue
	r       *Receiver
	set     *metrics.Set
	certs   tlsutil.Bundle
	mtls    *http.Client // presents the client certificate
	noCert  *http.Client // trusts the server, presents nothing
	list    []byte       // a real EventList of 5 events
	maxBody int64
}

func newFixture(t *testing.T, mod func(*Options)) *fixture {
	t.Helper()
	certs, _, err := tlsutil.Ensure(t.TempDir(), []string{"127.0.0.1", "localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{q: memqueue.New(memqueue.Options{MaxPending: 1000}), set: metrics.NewSet(), certs: certs}
	opts := Options{Queue: f.q, DeadLetters: f.q, Tokens: []string{token}, ClientCerts: true,
		MaxBodyBytes: 1 << 20, MaxEventBytes: 16 << 10, Metrics: f.set, DefaultCluster: "default"}
	if mod != nil {
		mod(&opts)
	}
	f.r, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.r.SetReady(true)
	f.srv = httptest.NewUnstartedServer(f.r)
	f.srv.TLS, err = tlsutil.ServerConfig(certs.Path(tlsutil.ServerCertFile), certs.Path(tlsutil.ServerKeyFile), certs.Path(tlsutil.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	for _, c := range []struct {
		dst       **http.Client
		cert, key string
	}{{&f.mtls, certs.Path(tlsutil.ClientCertFile), certs.Path(tlsutil.ClientKeyFile)}, {&f.noCert, "", ""}} {
		cfg, err := tlsutil.ClientConfig(certs.Path(tlsutil.CAFile), c.cert, c.key)
		if err != nil {
			t.Fatal(err)
		}
		*c.dst = &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	}
	f.list, err = os.ReadFile(filepath.Join("testdata", "eventlist.json"))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) counter(name string) uint64 {
	var buf bytes.Buffer
	f.set.WritePrometheus(&buf)
	for _, line := range strings.Split(buf.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var n uint64
			fmt.Sscan(v, &n)
			return n
		}
	}
	return 0
}

// items returns the real EventList's items.
func (f *fixture) items(t *testing.T) []map[string]any {
	var l struct{ Items []map[string]any }
	if err := json.Unmarshal(f.list, &l); err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func eventList(items ...any) string {
	b, _ := json.Marshal(map[string]any{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items})
	return string(b)
}

func TestReceiver_Refusals(t *testing.T) {
	f := newFixture(t, nil)
	good := f.items(t)
	withID := func(id string) map[string]any {
		e := map[string]any{}
		for k, v := range good[0] {
			e[k] = v
		}
		e["auditID"] = id
		return e
	}
	big := withID("big-one")
	big["userAgent"] = strings.Repeat("a", 20<<10)
	noStage := withID("no-stage")
	delete(noStage, "stage")
	badTime := withID("bad-time")
	badTime["requestReceivedTimestamp"] = "yesterday"
	manyGroups := withID("many-groups")
	groups := make([]string, 3000)
	for i := range groups {
		groups[i] = fmt.Sprintf("group-%d", i)
	}
	manyGroups["user"] = map[string]any{"username": "u", "groups": groups}
	deep := withID("deep-body")
	deep["requestObject"] = json.RawMessage(strings.Repeat(`{"spec":[`, 400) + `1` + strings.Repeat(`]}`, 400))

	type tc struct {
		name     string
		client   *http.Client
		method   string
		path     string
		ctype    string
		header   map[string]string
		body     string
		status   int
		counter  string // the metric that must count the case
		accepted int    // records queued
	}
	cases := []tc{
		{name: "no credentials", client: f.noCert, body: string(f.list), status: 401,
			counter: `vigil_webhook_rejected_requests_total{cluster="default",reason="unauthenticated"}`},
		{name: "wrong bearer token", client: f.noCert, header: map[string]string{"Authorization": "Bearer nope"}, body: string(f.list), status: 403,
			counter: `vigil_webhook_rejected_requests_total{cluster="default",reason="forbidden"}`},
		{name: "basic auth", client: f.noCert, header: map[string]string{"Authorization": "Basic YTpi"}, body: string(f.list), status: 401,
			counter: `vigil_webhook_rejected_requests_total{cluster="default",reason="unauthenticated"}`},
		{name: "GET", method: "GET", status: 405,
			counter: `vigil_webhook_rejected_requests_total{cluster="default",reason="method"}`},
		{name: "PUT", method: "PUT", body: string(f.list), status: 405,
			counter: `vigil_webhook_rejected_requests_total{cluster="default",reason="method"}`},
		{name: "unknown path", path: "/events", body: string(f.list), status: 404,
			counter: `vigil_webhook_rejected_requests_total{cluster="",reason="not_found"}`},
		{name: "bad cluster name", path: "/audit/a/b", body: string(f.list), status: 404,
			counter: `vigil_webhook_rejected_requests_total{cluster="",reason="not_found"}`},
		{name: "text/plain", ctype: "text/plain", body: string(f.list), status: 415,
			counter: `vigil_webhook_rejected_requests_total{cluster="default",reason="content_type"}`},
		{name: "gzip", header: map[string]string{"Content-Encoding": "gzip"}, body: string(f.list), status: 415,
			counter: `vigil_webhook_rejected_requests_total{cluster="default",reason="content_encoding"}`},
		{name: "body over limit", body: eventList(strings.Repeat("x", 2<<20)), status: 413,
			counter: `vigil_webhook_rejected_requests_total{cluster="default",reason="body_too_large"}`},
		{name: "malformed JSON", body: `{"kind":"EventList",`, status: 400,
			counter: `vigil_webhook_rejected_requests_total{cluster="default",reason="malformed_json"}`},
		{name: "JSON array", body: `[1,2]`, status: 400,
			counter: `vigil_webhook_rejected_requests_total{cluster="default",reason="malformed_json"}`},
		{name: "wrong kind", body: `{"kind":"PodList","apiVersion":"v1","items":[]}`, status: 400,
			counter: `vigil_webhook_rejected_requests_total{cluster="default",reason="wrong_kind"}`},
		{name: "wrong apiVersion", body: `{"kind":"EventList","apiVersion":"audit.k8s.io/v2","items":[]}`, status: 400,
			counter: `vigil_webhook_rejected_requests_total{cluster="default",reason="wrong_api_version"}`},
		{name: "items not an array", body: `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":{}}`, status: 400,
			counter: `vigil_webhook_rejected_requests_total{cluster="default",reason="malformed_json"}`},
		{name: "single event without auditID", body: `{"kind":"Event","apiVersion":"audit.k8s.io/v1","stage":"ResponseComplete"}`, status: 400,
			counter: `vigil_webhook_rejected_requests_total{cluster="default",reason="bad_event"}`},
		{name: "one item not an object", body: eventList(good[0], 42, good[1]), status: 200, accepted: 2,
			counter: `vigil_webhook_deadlettered_events_total{cluster="default",reason="bad_event"}`},
		{name: "one item without stage", path: "/audit/prod", body: eventList(good[2], noStage), status: 200, accepted: 1,
			counter: `vigil_webhook_deadlettered_events_total{cluster="prod",reason="bad_event"}`},
		{name: "one item with a bad timestamp", path: "/audit/prod", body: eventList(badTime, good[3]), status: 200, accepted: 1,
			counter: `vigil_webhook_deadlettered_events_total{cluster="prod",reason="bad_event"}`},
		{name: "one item over the event limit", path: "/audit/staging", body: eventList(big, good[4]), status: 200, accepted: 2,
			counter: `vigil_webhook_truncated_events_total{cluster="staging"}`},
		{name: "one item over the limit even without bodies", path: "/audit/staging", body: eventList(manyGroups, good[4]), status: 200, accepted: 1,
			counter: `vigil_webhook_deadlettered_events_total{cluster="staging",reason="event_too_large"}`},
		{name: "one item nested 400 levels deep", body: eventList(good[0], deep, good[1]), status: 200, accepted: 3,
			counter: `vigil_webhook_salvaged_events_total{cluster="default"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := f.counter(c.counter)
			pending := f.q.Pending()
			client := c.client
			if client == nil {
				client = f.mtls
			}
			method, path, ctype := c.method, c.path, c.ctype
			if method == "" {
				method = "POST"
			}
			if path == "" {
				path = "/audit"
			}
			if ctype == "" {
				ctype = "application/json"
			}
			req, _ := http.NewRequest(method, f.srv.URL+path+"?timeout=30s", strings.NewReader(c.body))
			req.Header.Set("Content-Type", ctype)
			for k, v := range c.header {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, c.status)
			}
			if c.status != 200 && (strings.Count(string(body), "\n") != 1 || !strings.Contains(string(body), ": ")) {
				t.Errorf("body %q, want one line with the reason", body)
			}
			if got := f.counter(c.counter); got != before+1 {
				t.Errorf("%s = %d, want %d", c.counter, got, before+1)
			}
			if got := f.q.Pending() - pending; got != c.accepted {
				t.Errorf("queued %d records, want %d", got, c.accepted)
			}
		})
	}
	if n := len(f.q.DeadLetters()); n != 5 {
		t.Errorf("dead letters = %d, want 5", n)
	}
}

func TestReceiver_AcceptsTokenAndSingleEvent(t *testing.T) {
	f := newFixture(t, nil)
	ev, _ := json.Marshal(f.items(t)[0])
	for _, body := range []string{string(f.list), string(ev)} {
		req, _ := http.NewRequest("POST", f.srv.URL+"/audit/c1", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := f.noCert.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	b, err := f.q.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The single event repeats the list's first: de-duplicated.
	if len(b.Records) != 5 || b.Records[0].Cluster != "c1" {
		t.Fatalf("read %d records (cluster %q), want 5 of c1", len(b.Records), b.Records[0].Cluster)
	}
	if _, ok := f.r.LastSeen()["c1"]; !ok {
		t.Error("no last-seen time for c1")
	}
}

func TestReceiver_QueueFullAndDraining(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.RetryAfter = 3 * time.Second })
	items := f.items(t)
	posts := 0
	post := func() *http.Response {
		// Fresh auditIDs each time, so nothing is a duplicate.
		posts++
		for i, it := range items {
			it["auditID"] = fmt.Sprintf("overload-%d-%d", posts, i)
		}
		req, _ := http.NewRequest("POST", f.srv.URL+"/audit", strings.NewReader(eventList(items[0], items[1], items[2], items[3], items[4])))
		req.Header.Set("Content-Type", "application/json")
		resp, err := f.mtls.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	// memqueue holds 1000 records; nobody reads, as if workers stalled.
	accepted := 0
	var full *http.Response
	for range 300 {
		resp := post()
		if resp.StatusCode == 429 {
			full = resp
			break
		}
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		accepted += 5
	}
	if full == nil || full.Header.Get("Retry-After") != "3" {
		t.Fatalf("no 429 with Retry-After 3 once the queue was full (accepted %d)", accepted)
	}
	if got := f.counter(`vigil_webhook_rejected_requests_total{cluster="default",reason="queue_full"}`); got != 1 {
		t.Errorf("queue_full counter = %d", got)
	}
	// The stall ends: everything acknowledged is delivered, and the
	// receiver accepts again.
	read := 0
	for read < accepted {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		b, err := f.q.Read(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		read += len(b.Records)
		b.Ack(t.Context(), nil)
	}
	if read != accepted || f.q.Pending() != 0 {
		t.Fatalf("read %d records (%d pending), want the %d acknowledged", read, f.q.Pending(), accepted)
	}
	if resp := post(); resp.StatusCode != 200 {
		t.Fatalf("after the stall: status %d", resp.StatusCode)
	}
	if err := f.r.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if resp := post(); resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("while draining: status %d, want 503 with Retry-After", resp.StatusCode)
	}
}

// TestParseBody_Split checks that items are taken from the body as sent,
// whatever the layout, and that what is not an EventList is refused whole.
func TestParseBody_Split(t *testing.T) {
	ev := func(id string) string {
		return `{"auditID":"` + id + `","stage":"ResponseComplete","verb":"get","requestReceivedTimestamp":"2026-01-02T03:04:05.000000Z"}`
	}
	deep := `{"auditID":"deep","stage":"ResponseComplete","verb":"create","requestObject":` +
		strings.Repeat(`{"a":[`, 200) + `1` + strings.Repeat(`]}`, 200) + `,"requestReceivedTimestamp":"2026-01-02T03:04:05Z"}`
	head := `"kind":"EventList","apiVersion":"audit.k8s.io/v1"`
	tests := []struct {
		name, body string
		want       []string // the items' data; nil with reason set
		reason     string
	}{
		{"compact", `{` + head + `,"items":[` + ev("a") + `,` + ev("b") + `]}`, []string{ev("a"), ev("b")}, ""},
		{"whitespace, items first", "{ \"items\" : [ " + ev("a") + " ,\r\n" + ev("b") + "\t] ,\n " + head + ",\"metadata\":{\"x\":[1,{\"y\":\"]}\"}]} }",
			[]string{ev("a"), ev("b")}, ""},
		{"escaped member name", `{` + head + `,"\u0069tems":[` + ev("a") + `]}`, []string{ev("a")}, ""},
		{"first of two items", `{` + head + `,"items":[` + ev("a") + `],"items":[` + ev("b") + `]}`, []string{ev("a")}, ""},
		{"400 levels deep", `{` + head + `,"items":[` + ev("a") + `,` + deep + `]}`, []string{ev("a"), deep}, ""},
		{"no items", `{` + head + `}`, nil, ""},
		{"null items", `{` + head + `,"items":null}`, nil, ""},
		{"items an object", `{` + head + `,"items":{}}`, nil, ReasonMalformed},
		{"cut after the items name", `{` + head + `,"items":`, nil, ReasonMalformed},
		{"cut in an item", `{` + head + `,"items":[` + ev("a") + `,{"auditID":"b"`, nil, ReasonMalformed},
		{"trailing data", `{` + head + `,"items":[]} x`, nil, ReasonMalformed},
		{"array", `[` + ev("a") + `]`, nil, ReasonMalformed},
		{"item list of another kind", `{"kind":"PodList","items":[]}`, nil, ReasonKind},
	}
	var dec ingest.Decoder
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items, code, reason, msg := parseBody(&dec, []byte(tt.body))
			if reason != tt.reason || (code == 0) != (tt.reason == "") {
				t.Fatalf("refused %d %s %s, want reason %q", code, reason, msg, tt.reason)
			}
			if len(items) != len(tt.want) {
				t.Fatalf("%d items, want %d", len(items), len(tt.want))
			}
			for i, it := range items {
				if string(it.data) != tt.want[i] || it.reason != "" {
					t.Errorf("item %d = %.60s (refused: %s %s), want %.60s", i, it.data, it.reason, it.detail, tt.want[i])
				}
				if it.salvaged != (tt.want[i] == deep) {
					t.Errorf("item %d: salvaged = %v", i, it.salvaged)
				}
			}
		})
	}
}

// TestReceiver_KeepsWhatCanBeRead posts a batch with an item whose body is
// nested deeper than a tree parser goes and an item over the event limit:
// both reach the queue with their metadata, the first as sent, the second
// without its bodies and marked truncated; the whole item is dead-lettered.
func TestReceiver_KeepsWhatCanBeRead(t *testing.T) {
	f := newFixture(t, nil)
	good := f.items(t)
	deep, big := map[string]any{}, map[string]any{}
	for k, v := range good[0] {
		deep[k], big[k] = v, v
	}
	deep["auditID"], big["auditID"] = "deep-body", "big-body"
	deep["verb"], big["verb"] = "create", "update"
	deep["objectRef"] = map[string]any{"resource": "widgets", "apiGroup": "example.com", "name": "w1"}
	deep["requestObject"] = json.RawMessage(strings.Repeat(`{"spec":[`, 400) + `1` + strings.Repeat(`]}`, 400))
	big["requestObject"] = map[string]any{"data": strings.Repeat("x", 20<<10)}
	body := eventList(good[1], deep, big)
	req, _ := http.NewRequest("POST", f.srv.URL+"/audit", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.mtls.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(answer) != `{"accepted":3,"deadLettered":1}`+"\n" {
		t.Fatalf("answer %d %s", resp.StatusCode, answer)
	}
	b, err := f.q.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Records) != 3 {
		t.Fatalf("queued %d records, want 3", len(b.Records))
	}
	var list struct{ Items []json.RawMessage }
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Records[1].Data, list.Items[1]) {
		t.Error("the deep item was not queued as sent")
	}
	var dec ingest.Decoder
	ev, err := dec.Decode(b.Records[1].Data)
	if err != nil || !ev.Vigil.BodyUnparsed || ev.Verb != "create" || ev.ObjectRef.Name != "w1" || ev.HasRequestObject() {
		t.Fatalf("deep item decodes to %+v, %v; want its metadata, marked bodyUnparsed", ev, err)
	}
	dec.Annotations = true
	ev, err = dec.Decode(b.Records[2].Data)
	if err != nil || !ev.Vigil.Truncated || ev.Vigil.BodyUnparsed || ev.AuditID != "big-body" || ev.Verb != "update" ||
		ev.HasRequestObject() || ev.Annotations["authorization.k8s.io/decision"] != "forbid" {
		t.Fatalf("over-limit item queued as %s (%+v, %v); want its metadata marked truncated", b.Records[2].Data, ev, err)
	}
	dl := f.q.DeadLetters()
	if len(dl) != 1 || !strings.HasPrefix(dl[0].Reason, "event_too_large: event big-body/ResponseComplete is") || len(dl[0].Data) < 20<<10 {
		t.Errorf("dead letters %d, want the whole over-limit item", len(dl))
	}
	for name, want := range map[string]uint64{
		`vigil_webhook_salvaged_events_total{cluster="default"}`:  1,
		`vigil_webhook_truncated_events_total{cluster="default"}`: 1,
		`vigil_webhook_received_events_total{cluster="default"}`:  3,
	} {
		if got := f.counter(name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
}
