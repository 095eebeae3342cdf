package kafkaq

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/ingest/queuetest"
)

// TestThroughput measures publish and consume rates against the
// in-process Kafka, as fast as they go and, with VIGIL_QUEUE_BENCH_RATE,
// at that rate. It runs with VIGIL_QUEUE_BENCH=1:
//
//	VIGIL_QUEUE_BENCH=1 go test -run TestThroughput -v ./ingest/kafkaq
func TestThroughput(t *testing.T) {
	if os.Getenv("VIGIL_QUEUE_BENCH") == "" {
		t.Skip("set VIGIL_QUEUE_BENCH=1 to measure")
	}
	rate, _ := strconv.Atoi(os.Getenv("VIGIL_QUEUE_BENCH_RATE"))
	q := open(t, runKafka(t), func(o *Options) { o.Partitions = 24 })
	defer q.Close(context.Background())
	t.Logf("kfake, one broker: %v", queuetest.Throughput(t, q, 4, rate, 3*time.Second, 10*time.Second))
}
