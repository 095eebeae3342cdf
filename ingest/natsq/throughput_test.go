package natsq

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/ingest/internal/natstest"
	"github.com/vigil-k8s/vigil/ingest/queuetest"
)

// TestThroughput measures publish and consume rates on one server (R1)
// and on a three-node cluster (R3), as fast as they go and, with
// VIGIL_QUEUE_BENCH_RATE, at that rate. It runs with VIGIL_QUEUE_BENCH=1:
//
//	VIGIL_QUEUE_BENCH=1 go test -run TestThroughput -v ./ingest/natsq
func TestThroughput(t *testing.T) {
	if os.Getenv("VIGIL_QUEUE_BENCH") == "" {
		t.Skip("set VIGIL_QUEUE_BENCH=1 to measure")
	}
	rate, _ := strconv.Atoi(os.Getenv("VIGIL_QUEUE_BENCH_RATE"))
	t.Run("R1", func(t *testing.T) {
		q := open(t, natstest.Server(t).ClientURL(), func(o *Options) { o.Partitions = 24 })
		defer q.Close(context.Background())
		t.Logf("one server, R1: %v", queuetest.Throughput(t, q, 4, rate, 3*time.Second, 10*time.Second))
	})
	t.Run("R3", func(t *testing.T) {
		nodes := natstest.Cluster(t, 3)
		q := open(t, nodes[0].ClientURL(), func(o *Options) { o.Partitions, o.Replicas = 24, 3 })
		defer q.Close(context.Background())
		t.Logf("three-node cluster, R3: %v", queuetest.Throughput(t, q, 4, rate, 3*time.Second, 10*time.Second))
	})
}
