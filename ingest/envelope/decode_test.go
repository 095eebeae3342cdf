package envelope

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/ingest"
)

const auditLine = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ns/secrets/s","verb":"get","user":{"username":"u"},"objectRef":{"resource":"secrets","namespace":"ns","name":"s","apiVersion":"v1"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-11-22T06:00:00.000000Z","stageTimestamp":"2026-11-22T06:00:00.100000Z"}`

func TestHTTPFromGRPC_Table(t *testing.T) {
	for _, c := range []struct{ grpc, http int }{
		{0, 200}, {1, 499}, {2, 500}, {3, 400}, {4, 504}, {5, 404}, {6, 409}, {7, 403}, {8, 429},
		{9, 400}, {10, 409}, {11, 400}, {12, 501}, {13, 500}, {14, 503}, {15, 500}, {16, 401}, {99, 500},
	} {
		if got := HTTPFromGRPC(c.grpc); got != c.http {
			t.Errorf("HTTPFromGRPC(%d) = %d, want %d", c.grpc, got, c.http)
		}
	}
	for _, c := range []struct{ http, grpc int }{
		{101, 0}, {200, 0}, {201, 0}, {304, 0}, {400, 3}, {401, 16}, {403, 7}, {404, 5}, {409, 6}, {422, 3},
		{429, 8}, {405, 9}, {500, 13}, {501, 12}, {503, 14}, {504, 4}, {502, 2},
	} {
		if got := GRPCFromHTTP(c.http); got != c.grpc {
			t.Errorf("GRPCFromHTTP(%d) = %d, want %d", c.http, got, c.grpc)
		}
	}
}

func TestParseResourceName(t *testing.T) {
	for _, c := range []struct {
		in   string
		want resourceRef
	}{
		{"core/v1/namespaces/ns/secrets/s", resourceRef{version: "v1", namespace: "ns", resource: "secrets", name: "s"}},
		{"core/v1/namespaces/ns/pods/web/exec", resourceRef{version: "v1", namespace: "ns", resource: "pods", name: "web", subresource: "exec"}},
		{"core/v1/namespaces/ns/pods", resourceRef{version: "v1", namespace: "ns", resource: "pods"}},
		{"core/v1/namespaces/ns", resourceRef{version: "v1", resource: "namespaces", name: "ns"}},
		{"core/v1/namespaces/ns/finalize", resourceRef{version: "v1", resource: "namespaces", name: "ns", subresource: "finalize"}},
		{"rbac.authorization.k8s.io/v1/clusterrolebindings/admin", resourceRef{group: "rbac.authorization.k8s.io", version: "v1", resource: "clusterrolebindings", name: "admin"}},
		{"/healthz", resourceRef{path: "/healthz"}},
	} {
		got, ok := parseResourceName(c.in)
		if !ok || got != c.want {
			t.Errorf("%s: %+v, want %+v", c.in, got, c.want)
		}
		if c.want.path == "" {
			w := c.want
			if back := ResourceName(w.group, w.version, w.namespace, w.resource, w.name, w.subresource); back != c.in {
				t.Errorf("ResourceName = %s, want %s", back, c.in)
			}
		}
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestDecoder_Envelopes reads each shape a provider's export takes.
func TestDecoder_Envelopes(t *testing.T) {
	cw := string(EKSMessage(EncodeOptions{Cluster: "prod"}, []CloudWatchEvent{{ID: "1", Timestamp: 1, Message: auditLine}}))
	aks := `{"category":"kube-audit","time":"2026-11-22T06:00:01Z","resourceId":"/SUBSCRIPTIONS/X/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS1","properties":{"log":` + quote(auditLine) + `,"stream":"stdout","pod":"p"}}`
	for _, c := range []struct {
		name, in                  string
		format                    Format
		events, skipped, bad      int
		truncated                 bool
		cluster, source, recordID string
	}{
		{name: "cloudwatch message", in: cw, events: 1, cluster: "prod", source: "eks", recordID: "1"},
		{name: "control message", in: string(EKSControlMessage(EncodeOptions{})), skipped: 1},
		{name: "lambda", in: `{"awslogs":{"data":"` + base64.StdEncoding.EncodeToString(Gzip([]byte(cw))) + `"}}`, events: 1, cluster: "prod", source: "eks"},
		{name: "firehose request", in: `{"requestId":"r","timestamp":1,"records":[{"data":"` + base64.StdEncoding.EncodeToString(Gzip([]byte(cw))) + `"},{"data":"` + b64(auditLine) + `"}]}`, events: 2, source: "eks"},
		{name: "filter-log-events", in: `{"events":[{"logStreamName":"kube-apiserver-audit-1","timestamp":1,"message":` + quote(auditLine) + `,"eventId":"9"},{"logStreamName":"kube-scheduler-1","message":"x"}]}`, events: 1, skipped: 1, source: "eks", recordID: "9"},
		{name: "other stream", in: strings.Replace(cw, "kube-apiserver-audit-", "authenticator-", 1), skipped: 1},
		{name: "aks record", in: aks, events: 1, cluster: "AKS1", source: "aks"},
		{name: "aks event hubs", in: `{"records":[` + aks + `,` + strings.Replace(aks, "kube-audit", "guard", 1) + `]}`, events: 1, skipped: 1, cluster: "AKS1", source: "aks"},
		{name: "gke other service", in: `{"protoPayload":{"@type":"` + auditLogType + `","serviceName":"container.googleapis.com","methodName":"google.container.v1.ClusterManager.GetCluster"},"insertId":"i"}`, skipped: 1},
		{name: "raw audit", in: auditLine, events: 1},
		{name: "raw audit refused when forced", in: auditLine, format: GKE, bad: 1},
		{name: "not an event", in: `{"hello":1}`, bad: 1},
		{name: "aks object too big", in: strings.Replace(aks, `\"responseStatus\"`, `\"requestObject\":\"skipped-too-big-size-object\",\"responseStatus\"`, 1), events: 1, cluster: "AKS1", source: "aks", truncated: true},
		{name: "aks record without log", in: `{"category":"kube-audit","properties":{}}`, bad: 1},
		{name: "cloudwatch message not an event", in: string(EKSMessage(EncodeOptions{}, []CloudWatchEvent{{ID: "1", Message: "I1122 started"}})), bad: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			var items []Item
			var skipped, bad int
			d := Decoder{Format: c.format, Item: func(it Item) error { items = append(items, it); return nil },
				Skip: func(string, string) { skipped++ }, Bad: func(string, error, []byte) error { bad++; return nil }}
			if err := d.Payload([]byte(c.in), "in"); err != nil {
				t.Fatal(err)
			}
			if len(items) != c.events || skipped != c.skipped || bad != c.bad {
				t.Fatalf("%d events, %d skipped, %d bad", len(items), skipped, bad)
			}
			for _, it := range items {
				var dec ingest.Decoder
				dec.Annotations = true
				ev, err := dec.Decode(it.Data)
				if err != nil {
					t.Fatal(err)
				}
				if it.Truncated != c.truncated || (c.truncated && (ev.Annotations[AnnotationTruncated] != "true" || ev.HasRequestObject())) {
					t.Errorf("item %s: truncated %v, annotations %v", it.Origin, it.Truncated, ev.Annotations)
				}
				if (c.cluster != "" && it.Cluster != c.cluster) || ev.Annotations[AnnotationSource] != c.source || it.AuditID != "a1" ||
					(c.recordID != "" && ev.Annotations[AnnotationRecord] != c.recordID) {
					t.Errorf("item %s (cluster %q), annotations %v", it.Origin, it.Cluster, ev.Annotations)
				}
			}
		})
	}
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// TestReader_MixedFilesAndDirectories reads a directory tree as a bucket
// export leaves it: nested, a README beside the logs, a raw audit log, a
// pretty-printed gcloud export and a file mixing raw and enveloped events.
func TestReader_MixedFilesAndDirectories(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var gke strings.Builder
	enc, _ := NewEncoder(&gke, GKE, EncodeOptions{Cluster: "g"})
	enc.Write([]byte(auditLine))
	enc.Close()
	write("README.md", "# exported logs\n")
	write("raw/audit.log", auditLine+"\n"+strings.Replace(auditLine, "a1", "a2", 1)+"\n")
	write("gcs/2026/11/22/06:00:00_06:59:59_S0.json", "[\n  "+strings.TrimSpace(gke.String())+"\n]\n")
	write("mixed/events", auditLine+"\n"+string(EKSMessage(EncodeOptions{Cluster: "e"}, []CloudWatchEvent{{ID: "1", Message: auditLine}}))+"\nnot json\n")
	var bad []string
	r, err := Open([]string{dir}, nil, Options{OnError: func(o string, err error) error { bad = append(bad, o); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	var clusters []string
	for {
		b, err := r.Read(context.Background())
		for _, rec := range b.Records {
			clusters = append(clusters, rec.Cluster)
		}
		if err != nil {
			break
		}
	}
	if got := strings.Join(clusters, ","); got != "g,,e,," {
		t.Errorf("clusters %q", got)
	}
	if len(bad) != 1 || !strings.HasSuffix(bad[0], "mixed/events:3") {
		t.Errorf("bad %q", bad)
	}
}
