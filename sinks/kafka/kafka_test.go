package kafka_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/sinks/kafka"
	"github.com/vigil-k8s/vigil/sinks/sinktest"
)

func TestSink_Send(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "vigil-alerts"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := kafka.New(kafka.Config{Name: "siem", Brokers: c.ListenAddrs(), Topic: "vigil-alerts"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := sinktest.Alerts()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if retry, err := s.Send(ctx, in...); err != nil {
		t.Fatalf("Send: retry=%v err=%v", retry, err)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("vigil-alerts"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string]*kgo.Record{}
	for len(got) < len(in) {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("got %d of %d records: %v", len(got), len(in), err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var a detect.Alert
			if err := json.Unmarshal(r.Value, &a); err != nil {
				t.Errorf("record value: %v", err)
				return
			}
			got[a.Fingerprint] = r
		})
	}
	for i := range in {
		r := got[in[i].Fingerprint]
		if r == nil {
			t.Errorf("alert %s not produced", in[i].Rule)
			continue
		}
		if want := in[i].Rule + "/" + in[i].GroupKey; string(r.Key) != want {
			t.Errorf("key %q, want %q", r.Key, want)
		}
	}
}

func TestConfig_Validate(t *testing.T) {
	err := kafka.Config{Brokers: []string{"nohost"}, BatchBytes: 2 << 20}.Validate()
	for _, want := range []string{"brokers[0]", "topic: required", "batch_bytes"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want %q", err, want)
		}
	}
}
