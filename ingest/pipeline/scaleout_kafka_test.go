package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/vigil-k8s/vigil/ingest/jetstream"
	"github.com/vigil-k8s/vigil/ingest/kafkaq"
)

// cutter dials the brokers for one replica and can cut it off them: its
// connections close and new ones fail, as when its host dies.
type cutter struct {
	mu    sync.Mutex
	conns []net.Conn
	cut   bool
}

func (c *cutter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut {
		return nil, errors.New("host down")
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		c.conns = append(c.conns, conn)
	}
	return conn, err
}

func (c *cutter) cutOff() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = true
	for _, conn := range c.conns {
		conn.Close()
	}
}

// TestScaleOut_KafkaFailover runs two replicas on Kafka (kfake), each
// with its alert streams in its own embedded JetStream as vigil serve
// has them, and kills the one reading the burst's partition (failover).
func TestScaleOut_KafkaFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two replicas through a failover")
	}
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	rs := compileRuleText(t, burstRules)
	l := newLedger()
	var replicas []*scaleReplica
	cutters := map[string]*cutter{}
	for i := range 2 {
		name := fmt.Sprint("vigil-", i)
		c := &cutter{}
		cutters[name] = c
		// Failover as configured by default (session timeout 10s).
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		q, err := kafkaq.Open(ctx, kafkaq.Options{Brokers: kc.ListenAddrs(), Partitions: 6, Replication: 1, Dial: c.dial})
		cancel()
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
		store, err := jetstream.Open(t.Context(), jetstream.Options{Dir: filepath.Join(t.TempDir(), "alerts")})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close(context.Background())
		r := startReplica(t, l, rs, replicaSetup{name: name, q: q, js: store.JetStream(), jsReplicas: 1, sent: sent, snapshots: snaps})
		replicas = append(replicas, r)
	}
	defer func() {
		for _, r := range replicas {
			r.cancel()
			<-r.done
		}
	}()
	failover(t, l, replicas, func(v *scaleReplica) {
		v.alerts.dead.Store(true)
		cutters[v.name].cutOff()
		v.cancel()
		close(v.q.killed)
	}, 30*time.Second)
}
