package pipeline

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest/internal/natstest"
	"github.com/vigil-k8s/vigil/ingest/natsq"
)

// TestScaleOut_NATSFailover runs two replicas on a three-node NATS
// cluster (streams, bucket and object store R3), each connected to its own
// node, and kills the one reading the burst's partition together with its
// node (failover).
func TestScaleOut_NATSFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	nodes := natstest.Cluster(t, 3)
	rs := compileRuleText(t, burstRules)
	l := newLedger()
	var replicas []*scaleReplica
	conns := map[string]*nats.Conn{}
	for i := range 2 {
		name := fmt.Sprint("vigil-", i)
		nc, err := nats.Connect(nodes[i].ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		conns[name] = nc
		// Failover as configured by default (PinnedTTL 10s); AckWait
		// shorter than its 30s so that what the dead replica held comes
		// back within the test.
		q, err := natsq.Open(t.Context(), natsq.Options{Conn: nc, Member: name, Partitions: 6, Replicas: 3,
			AckWait: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		sent, err := q.SentSet(t.Context(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		snaps, err := q.Snapshots(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		r := startReplica(t, l, rs, replicaSetup{name: name, q: q, js: js, jsReplicas: 3, sent: sent, snapshots: snaps})
		replicas = append(replicas, r)
	}
	defer func() {
		for _, r := range replicas {
			r.cancel()
			<-r.done
		}
	}()
	failover(t, l, replicas, func(v *scaleReplica) {
		// A crash: no goodbye to the queue, the alert store or the node.
		v.alerts.dead.Store(true)
		conns[v.name].Close()
		for i, r := range replicas {
			if r == v {
				nodes[i].Shutdown()
			}
		}
		v.cancel()
		close(v.q.killed)
	}, 30*time.Second)
}

func compileRuleText(t *testing.T, text string) *detect.RuleSet {
	t.Helper()
	cat, err := detect.ParseRuleFile("test.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := detect.Compile(cat)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}
