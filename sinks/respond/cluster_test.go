package respond

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/internal/e2e"
)

// The control plane of this package's tests starts with the first test
// that needs it and stops after the last (TestMain).
var (
	clusterOnce sync.Once
	testEnv     *clusterEnv
	clusterErr  error
)

// clusterEnv is a running apiserver with vigil's service account bound to
// the RBAC of every action (what vigil respond rbac --all prints).
type clusterEnv struct {
	cp    *e2e.ControlPlane
	dir   string
	admin *Cluster
	// vigil acts as system:serviceaccount:vigil:vigil.
	vigil *Cluster
}

func TestMain(m *testing.M) {
	code := m.Run()
	if testEnv != nil {
		testEnv.cp.Stop()
		os.RemoveAll(testEnv.dir)
	}
	os.Exit(code)
}

// needCluster returns the shared control plane, or skips the test when the
// binaries are missing.
func needCluster(t *testing.T) *clusterEnv {
	t.Helper()
	if _, _, skip := e2e.Binaries(); skip != "" {
		t.Skip(skip)
	}
	clusterOnce.Do(func() { testEnv, clusterErr = startCluster() })
	if clusterErr != nil {
		t.Fatal(clusterErr)
	}
	return testEnv
}

func startCluster() (*clusterEnv, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "respond-cluster-")
	if err != nil {
		return nil, err
	}
	cp, err := e2e.Start(ctx, e2e.Options{Dir: dir})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	env := &clusterEnv{cp: cp, dir: dir}
	if env.admin, err = NewCluster(cp.RESTConfig(e2e.AdminToken)); err != nil {
		return env, err
	}
	token, err := bindVigil(ctx, cp, AllActions())
	if err != nil {
		return env, err
	}
	env.vigil, err = NewCluster(cp.RESTConfig(token))
	return env, err
}

// bindVigil creates vigil's namespace and service account, applies the
// RBAC of the actions and returns a token of the service account.
func bindVigil(ctx context.Context, cp *e2e.ControlPlane, actions []string) (string, error) {
	kc, err := cp.Kubeconfig("admin", e2e.AdminToken)
	if err != nil {
		return "", err
	}
	rbac, err := RBAC(actions, "vigil", "vigil")
	if err != nil {
		return "", err
	}
	objs := append([]byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: vigil}\n---\n"+
		"apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: vigil, namespace: vigil}\n---\n"), rbac...)
	if _, err := e2e.Kubectl(ctx, kc, objs, "apply", "-f", "-"); err != nil {
		return "", err
	}
	return cp.ServiceAccountToken(ctx, "vigil", "vigil")
}

// namespace creates a fresh namespace for one test.
func (e *clusterEnv) namespace(t *testing.T, name string) string {
	t.Helper()
	_, err := e.admin.Core.Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// actAs returns clients acting as the service account vigil/name, bound
// only to the RBAC of the given actions.
func (e *clusterEnv) actAs(t *testing.T, name string, actions []string) *Cluster {
	t.Helper()
	rbac, err := RBAC(actions, "vigil", name)
	if err != nil {
		t.Fatal(err)
	}
	applyYAML(t, e, "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: "+name+", namespace: vigil}\n---\n"+
		strings.ReplaceAll(string(rbac), RBACName, RBACName+"-"+name))
	token, err := e.cp.ServiceAccountToken(context.Background(), "vigil", name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCluster(e.cp.RESTConfig(token))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// responder acts as vigil on the cluster with one rule of one action.
func (e *clusterEnv) responder(t *testing.T, action string, enforce bool) (*Responder, *Journal) {
	t.Helper()
	j, err := OpenJournal(filepath.Join(t.TempDir(), "journal.jsonl"), JournalOptions{Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := mustDecode(t, fmt.Sprintf(`
protect: {self: {namespace: vigil, service_account: vigil}}
rules: [{name: r, match: {rules: ["*"]}, actions: [{%s, enforce: %t}]}]`, action, enforce))
	r, err := New(cfg, Options{Cluster: e.vigil, Journal: j})
	if err != nil {
		t.Fatal(err)
	}
	r.Start(nil)
	t.Cleanup(func() { r.Close() })
	return r, j
}

// handleOne runs the alert and returns its single record.
func handleOne(t *testing.T, r *Responder, al detect.Alert) Record {
	t.Helper()
	recs, err := r.Handle(context.Background(), al)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Fatalf("records %v, want one", summary(recs))
	}
	return recs[0]
}

// applyYAML applies objects as the admin, with kubectl.
func applyYAML(t *testing.T, e *clusterEnv, objs string) {
	t.Helper()
	kc, err := e.cp.Kubeconfig("admin", e2e.AdminToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e2e.Kubectl(context.Background(), kc, []byte(objs), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
}
