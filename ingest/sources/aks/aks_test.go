package aks

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/vigil-k8s/vigil/ingest/envelope"
	"github.com/vigil-k8s/vigil/ingest/pipeline"
	"github.com/vigil-k8s/vigil/ingest/sources"
	"github.com/vigil-k8s/vigil/ingest/sources/sourcetest"
	"github.com/vigil-k8s/vigil/ingest/tlsutil"
)

const connString = "Endpoint=sb://vigil.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=c2VjcmV0"

// TestSource_EndToEndWithRestart sends a recording as diagnostic-settings
// batches to an in-process Kafka broker that, like Event Hubs, takes SASL
// PLAIN over TLS; the source, crashed once between storing a batch and
// committing it, brings every alert through the pipeline once.
func TestSource_EndToEndWithRestart(t *testing.T) {
	b, _, err := tlsutil.Ensure(t.TempDir(), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srvTLS, err := tlsutil.ServerConfig(b.Path(tlsutil.ServerCertFile), b.Path(tlsutil.ServerKeyFile), "")
	if err != nil {
		t.Fatal(err)
	}
	// One partition: the alerts are compared with a replay of the same
	// events in order, and window rules depend on the order Kafka keeps
	// only within a partition.
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "aks-audit"), kfake.TLS(srvTLS),
		kfake.EnableSASL(), kfake.Superuser("PLAIN", "$ConnectionString", connString))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ca, err := os.ReadFile(b.Path(tlsutil.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	clientTLS := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}

	enc, _ := envelope.NewEncoder(&bytes.Buffer{}, envelope.AKS, envelope.EncodeOptions{Cluster: "aks-1"})
	var bodies [][]byte
	var recs [][]byte
	for _, ev := range sourcetest.Recording(t, "run2") {
		r, err := enc.AKSRecord(ev)
		if err != nil {
			t.Fatal(err)
		}
		if recs = append(recs, r); len(recs) == 20 {
			bodies, recs = append(bodies, envelope.AKSEventHubsBody(recs...)), nil
		}
	}
	bodies = append(bodies, envelope.AKSEventHubsBody(recs...))
	rs := sourcetest.Rules(t)
	want, n := sourcetest.Expected(t, rs, envelope.AKS, bodies)

	w := &kafka.Writer{Addr: kafka.TCP(c.ListenAddrs()...), Topic: "aks-audit", BatchBytes: 1 << 20, BatchTimeout: 10 * time.Millisecond,
		Transport: &kafka.Transport{TLS: clientTLS, SASL: plain.Mechanism{Username: "$ConnectionString", Password: connString}}}
	defer w.Close()
	src := sourcetest.NewRestarting(4, func() pipeline.Source {
		s, err := New(Config{Common: sources.Common{}, Brokers: c.ListenAddrs(), Topic: "aks-audit",
			ConnectionString: connString, TLS: clientTLS, MaxBatch: 10, MaxWait: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
	sourcetest.Check(t, rs, src, n, want, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		msgs := make([]kafka.Message, len(bodies))
		for i, body := range bodies {
			msgs[i] = kafka.Message{Value: body}
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	})
}
