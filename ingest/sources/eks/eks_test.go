package eks

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"

	"github.com/vigil-k8s/vigil/ingest/envelope"
	"github.com/vigil-k8s/vigil/ingest/memqueue"
	"github.com/vigil-k8s/vigil/ingest/pipeline"
	"github.com/vigil-k8s/vigil/ingest/sources"
	"github.com/vigil-k8s/vigil/ingest/sources/sourcetest"
)

// cwEvents returns a recording as the CloudWatch Logs events of an EKS
// audit stream.
func cwEvents(t *testing.T) []envelope.CloudWatchEvent {
	var buf bytes.Buffer
	enc, _ := envelope.NewEncoder(&buf, envelope.EKS, envelope.EncodeOptions{Cluster: "eks-1", EKSBatch: 1 << 30})
	var out []envelope.CloudWatchEvent
	for i, ev := range sourcetest.Recording(t, "run2") {
		if err := enc.Write(ev); err != nil {
			t.Fatal(err)
		}
		var m struct {
			ST time.Time `json:"stageTimestamp"`
		}
		json.Unmarshal(ev, &m)
		out = append(out, envelope.CloudWatchEvent{ID: fmt.Sprintf("%056d", i), Timestamp: m.ST.UnixMilli(), Message: string(ev)})
	}
	return out
}

// freePort returns a loopback address nothing listens on, for a server
// that restarts on the same address.
func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestFirehose_EndToEndWithRestart plays Firehose: it POSTs the recording's
// CloudWatch messages and retries every request not answered 200, as
// Firehose does; the endpoint, crashed once between storing a request and
// answering it, brings every alert through the pipeline once.
func TestFirehose_EndToEndWithRestart(t *testing.T) {
	events := cwEvents(t)
	opts := envelope.EncodeOptions{Cluster: "eks-1"}
	var payloads [][]byte
	for c := range slices.Chunk(events, 25) {
		payloads = append(payloads, envelope.Gzip(envelope.EKSMessage(opts, c)))
	}
	rs := sourcetest.Rules(t)
	want, n := sourcetest.Expected(t, rs, envelope.EKS, payloads)
	addr := freePort(t)
	src := sourcetest.NewRestarting(5, func() pipeline.Source {
		f, err := NewFirehose(FirehoseConfig{Listen: addr, AccessKey: "k3y"})
		if err != nil {
			t.Fatal(err)
		}
		return f
	})
	sourcetest.Check(t, rs, src, n, want, func() {
		go func() {
			for i, c := range slices.Collect(slices.Chunk(payloads, 3)) {
				req := map[string]any{"requestId": fmt.Sprintf("req-%d", i), "timestamp": time.Now().UnixMilli()}
				var recs []map[string]string
				for _, p := range c {
					recs = append(recs, map[string]string{"data": base64.StdEncoding.EncodeToString(p)})
				}
				req["records"] = recs
				body, _ := json.Marshal(req)
				firehosePost(t, "http://"+addr+"/firehose", "k3y", body, fmt.Sprintf("req-%d", i))
			}
		}()
	})
}

// firehosePost delivers one request as Firehose does: again until 200.
func firehosePost(t *testing.T, url, key string, body []byte, reqID string) {
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		r, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		r.Header.Set("X-Amz-Firehose-Access-Key", key)
		r.Header.Set("X-Amz-Firehose-Request-Id", reqID)
		r.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			continue
		}
		var ans struct {
			RequestID string `json:"requestId"`
			Timestamp int64  `json:"timestamp"`
		}
		json.NewDecoder(resp.Body).Decode(&ans)
		resp.Body.Close()
		if ans.RequestID != reqID || ans.Timestamp == 0 {
			t.Errorf("answer %+v to %s", ans, reqID)
		}
		if resp.StatusCode == http.StatusOK {
			return
		}
	}
	t.Errorf("request %s never stored", reqID)
}

// TestFirehose_Refusals: a wrong key, a body that is not a Firehose
// request and a GET are refused with the documented body; a record that
// is not base64 is dead-lettered and the rest stored.
func TestFirehose_Refusals(t *testing.T) {
	f, err := NewFirehose(FirehoseConfig{Listen: "127.0.0.1:0", AccessKey: "k3y", Common: sources.Common{Cluster: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	q := memqueue.New(memqueue.Options{})
	f.pub, f.ctx = q, context.Background()
	good := base64.StdEncoding.EncodeToString(envelope.Gzip(envelope.EKSMessage(envelope.EncodeOptions{}, cwEvents(t)[:3])))
	for _, c := range []struct {
		name, method, key, body string
		status                  int
	}{
		{"wrong key", http.MethodPost, "nope", `{"requestId":"r","records":[]}`, http.StatusUnauthorized},
		{"not a request", http.MethodPost, "k3y", `[1,2]`, http.StatusBadRequest},
		{"get", http.MethodGet, "k3y", ``, http.StatusMethodNotAllowed},
		{"bad record", http.MethodPost, "k3y", `{"requestId":"r","records":[{"data":"%%%"},{"data":"` + good + `"}]}`, http.StatusOK},
	} {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(c.method, "/firehose", strings.NewReader(c.body))
		r.Header.Set("X-Amz-Firehose-Access-Key", c.key)
		r.Header.Set("X-Amz-Firehose-Request-Id", "r")
		f.ServeHTTP(rec, r)
		if rec.Code != c.status || !strings.Contains(rec.Body.String(), `"requestId":"r"`) {
			t.Errorf("%s: %d %s", c.name, rec.Code, rec.Body)
		}
	}
	if q.Pending() != 3 || len(q.DeadLetters()) != 1 {
		t.Errorf("%d stored, %d dead letters", q.Pending(), len(q.DeadLetters()))
	}
}

// fakeLogs speaks the CloudWatch Logs JSON protocol for FilterLogEvents.
type fakeLogs struct {
	mu     sync.Mutex
	group  string
	events []envelope.CloudWatchEvent
	calls  int
}

func (f *fakeLogs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Amz-Target") != "Logs_20140328.FilterLogEvents" || !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256") {
		http.Error(w, `{"__type":"UnknownOperationException"}`, http.StatusBadRequest)
		return
	}
	var in struct {
		LogGroupName, LogStreamNamePrefix, NextToken string
		StartTime                                    int64
	}
	json.NewDecoder(r.Body).Decode(&in)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if in.LogGroupName != f.group {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"__type":"ResourceNotFoundException","message":"The specified log group does not exist."}`)
		return
	}
	from, _ := strconv.Atoi(in.NextToken)
	var page []map[string]any
	next := ""
	for i := from; i < len(f.events); i++ {
		e := f.events[i]
		if e.Timestamp < in.StartTime {
			continue
		}
		if len(page) == 100 {
			next = strconv.Itoa(i)
			break
		}
		page = append(page, map[string]any{"logStreamName": "kube-apiserver-audit-0abc", "timestamp": e.Timestamp,
			"message": e.Message, "ingestionTime": e.Timestamp + 500, "eventId": e.ID})
	}
	out := map[string]any{"events": page, "searchedLogStreams": []any{}}
	if next != "" {
		out["nextToken"] = next
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(out)
}

// TestCloudWatch_EndToEndWithRestart polls a fake of the CloudWatch Logs
// API; the poller, crashed once between storing a page and saving its
// cursor, restarts from the saved cursor and brings every alert through
// the pipeline once.
func TestCloudWatch_EndToEndWithRestart(t *testing.T) {
	events := cwEvents(t)
	fake := &fakeLogs{group: "/aws/eks/eks-1/cluster"}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	client := cloudwatchlogs.New(cloudwatchlogs.Options{Region: "eu-west-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "secret"}, nil
		})})
	rs := sourcetest.Rules(t)
	want, n := sourcetest.Expected(t, rs, envelope.EKS,
		[][]byte{envelope.EKSMessage(envelope.EncodeOptions{Cluster: "eks-1"}, events)})
	state := filepath.Join(t.TempDir(), "cursor.json")
	src := sourcetest.NewRestarting(6, func() pipeline.Source {
		c, err := NewCloudWatch(CloudWatchConfig{Common: sources.Common{Cluster: "eks-1"}, StateFile: state,
			Client: client, PollInterval: 20 * time.Millisecond, Lookback: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
	sourcetest.Check(t, rs, src, n, want, func() {
		// The log group fills while the poller reads it.
		go func() {
			for c := range slices.Chunk(events, 300) {
				fake.mu.Lock()
				fake.events = append(fake.events, c...)
				fake.mu.Unlock()
				time.Sleep(30 * time.Millisecond)
			}
		}()
	})
}
