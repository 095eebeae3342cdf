package nats_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/sinks/nats"
	"github.com/vigil-k8s/vigil/sinks/sinktest"
)

func startServer(t *testing.T) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

func TestSink_Send(t *testing.T) {
	ns := startServer(t)
	nc, err := natsgo.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("alerts.>")
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	s, err := nats.New(nats.Config{Name: "bus", URL: ns.ClientURL(), Subject: "alerts.{severity}.{rule}"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := sinktest.Alerts()
	if _, err := s.Send(t.Context(), in...); err != nil {
		t.Fatal(err)
	}
	for i := range in {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if want := "alerts." + in[i].Severity.String() + "." + in[i].Rule; m.Subject != want {
			t.Errorf("subject %s, want %s", m.Subject, want)
		}
		var a detect.Alert
		if err := json.Unmarshal(m.Data, &a); err != nil || a.Fingerprint != in[i].Fingerprint {
			t.Errorf("message %d: %v %s", i, err, m.Data)
		}
		if m.Header.Get("Vigil-Rule") != in[i].Rule {
			t.Errorf("header Vigil-Rule = %q", m.Header.Get("Vigil-Rule"))
		}
	}
}

func TestSink_Send_jetstream(t *testing.T) {
	ns := startServer(t)
	nc, err := natsgo.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "SIEM", Subjects: []string{"siem.>"}})
	if err != nil {
		t.Fatal(err)
	}
	// The shared connection of the embedded server (no url).
	s, err := nats.New(nats.Config{Name: "bus", Subject: "siem.vigil", JetStream: true}, nc)
	if err != nil {
		t.Fatal(err)
	}
	in := sinktest.Alerts()
	for range 2 { // the second send is deduplicated by fingerprint
		if _, err := s.Send(t.Context(), in...); err != nil {
			t.Fatal(err)
		}
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(len(in)) {
		t.Errorf("stream holds %d messages, want %d", info.State.Msgs, len(in))
	}
}

func TestSink_Send_serverDown(t *testing.T) {
	ns := startServer(t)
	url := ns.ClientURL()
	s, err := nats.New(nats.Config{Name: "bus", URL: url, Subject: "x", Timeout: detect.Duration(300 * time.Millisecond)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ns.Shutdown()
	retry, err := s.Send(t.Context(), sinktest.Alerts()[0])
	if err == nil || !retry {
		t.Fatalf("retry=%v err=%v, want a retryable error with the server down", retry, err)
	}
}
