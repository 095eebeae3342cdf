// Package natstest starts NATS servers with JetStream on loopback for
// tests: one, or a cluster.
package natstest

import (
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server starts a NATS server with JetStream on a loopback port; it stops
// at the end of the test.
func Server(t testing.TB) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// Cluster starts n clustered NATS servers with JetStream on loopback
// ports and waits until they have a JetStream leader. They stop at the end
// of the test; one may be shut down before.
func Cluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	// Route ports are chosen first so that every node can name the others.
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	var nodes []*server.Server
	for i := range n {
		var routes []*url.URL
		for j, p := range ports {
			if j != i {
				routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprint("127.0.0.1:", p)})
			}
		}
		ns, err := server.NewServer(&server.Options{ServerName: fmt.Sprint("n", i), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true, Routes: routes,
			Cluster: server.ClusterOpts{Name: "vigil", Host: "127.0.0.1", Port: ports[i]}})
		if err != nil {
			t.Fatal(err)
		}
		ns.Start()
		t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
		nodes = append(nodes, ns)
	}
	for _, ns := range nodes {
		if !ns.ReadyForConnections(20 * time.Second) {
			t.Fatal("nats server not ready")
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ready := 0
		for _, ns := range nodes {
			if ns.JetStreamIsClustered() && ns.JetStreamIsCurrent() && ns.NumRoutes() >= n-1 {
				ready++
			}
		}
		if ready == n {
			return nodes
		}
		if time.Now().After(deadline) {
			t.Fatal("cluster has no JetStream leader after 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
