package gke

import (
	"bytes"
	"context"
	"testing"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"

	"github.com/vigil-k8s/vigil/ingest/envelope"
	"github.com/vigil-k8s/vigil/ingest/pipeline"
	"github.com/vigil-k8s/vigil/ingest/sources"
	"github.com/vigil-k8s/vigil/ingest/sources/sourcetest"
)

// TestSource_EndToEndWithRestart publishes a recording's LogEntries to an
// in-process Pub/Sub server (the events of people: pstest delivers about a
// hundred messages a second); the source, crashed once between storing a
// batch and acknowledging it, brings every alert through the pipeline once.
func TestSource_EndToEndWithRestart(t *testing.T) {
	srv := pstest.NewServer()
	defer srv.Close()
	ctx := context.Background()
	const topic, sub = "projects/p/topics/gke-audit", "projects/p/subscriptions/vigil"
	if _, err := srv.GServer.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.GServer.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub, Topic: topic, AckDeadlineSeconds: 10}); err != nil {
		t.Fatal(err)
	}
	var entries [][]byte
	enc, _ := envelope.NewEncoder(&bytes.Buffer{}, envelope.GKE, envelope.EncodeOptions{Cluster: "gke-1"})
	for _, ev := range sourcetest.People(sourcetest.Recording(t, "run2")) {
		e, ok, err := enc.GKEEntry(ev)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			entries = append(entries, e)
		}
	}
	// One message that is not an audit entry: it is dead-lettered, not lost.
	entries = append(entries, []byte(`{"protoPayload":{"methodName":"io.k8s.core.v1.pods.get"}}`))
	rs := sourcetest.Rules(t)
	want, n := sourcetest.Expected(t, rs, envelope.GKE, entries[:len(entries)-1])
	src := sourcetest.NewRestarting(3, func() pipeline.Source {
		s, err := New(Config{Common: sources.Common{Cluster: "default"}, Project: "p", Subscription: "vigil",
			Endpoint: srv.Addr, Insecure: true, MaxBatch: 50})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
	sourcetest.Check(t, rs, src, n, want, func() {
		for _, e := range entries {
			srv.Publish(topic, e, nil)
		}
	})
}
