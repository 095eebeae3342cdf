package respond

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/dynamic"
	appsv1client "k8s.io/client-go/kubernetes/typed/apps/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	networkingv1client "k8s.io/client-go/kubernetes/typed/networking/v1"
	rbacv1client "k8s.io/client-go/kubernetes/typed/rbac/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// FieldManager names vigil in managedFields and server-side apply.
const FieldManager = "vigil"

// DefaultRequestTimeout bounds each API request of an action.
const DefaultRequestTimeout = 15 * time.Second

// Cluster holds the typed clients actions use, and a dynamic client for
// annotate, which works on any object.
type Cluster struct {
	Core    corev1client.CoreV1Interface
	Apps    appsv1client.AppsV1Interface
	RBAC    rbacv1client.RbacV1Interface
	Net     networkingv1client.NetworkingV1Interface
	Dynamic dynamic.Interface
}

// NewCluster builds the clients of cfg, sharing one HTTP client.
func NewCluster(cfg *rest.Config) (*Cluster, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.UserAgent == "" {
		cfg.UserAgent = "vigil-respond"
	}
	// A request that hangs must not hold the alert stream: it fails, and
	// the alert comes back.
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultRequestTimeout
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	c := &Cluster{}
	var errs [5]error
	var core *corev1client.CoreV1Client
	var apps *appsv1client.AppsV1Client
	var rbac *rbacv1client.RbacV1Client
	var netc *networkingv1client.NetworkingV1Client
	core, errs[0] = corev1client.NewForConfigAndClient(cfg, hc)
	apps, errs[1] = appsv1client.NewForConfigAndClient(cfg, hc)
	rbac, errs[2] = rbacv1client.NewForConfigAndClient(cfg, hc)
	netc, errs[3] = networkingv1client.NewForConfigAndClient(cfg, hc)
	c.Dynamic, errs[4] = dynamic.NewForConfigAndClient(cfg, hc)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	c.Core, c.Apps, c.RBAC, c.Net = core, apps, rbac, netc
	return c, nil
}

// RESTConfig loads the credentials to act with: kubeconfig when given,
// else the pod's service account in a cluster, else $KUBECONFIG or
// ~/.kube/config.
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config: %w", err)
		}
		return cfg, nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	return cfg, nil
}

// inClusterNamespace is the namespace of the pod vigil runs in, or "".
func inClusterNamespace() string {
	b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// transient reports whether an API error may go away by itself: the
// apiserver is down or busy, or the object changed under us (a conflict,
// retried from a fresh read). Everything else (forbidden, invalid, not
// found) is an answer about the request and is recorded.
func transient(err error) bool {
	if err == nil {
		return false
	}
	var tmp temporary
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &tmp) {
		return true
	}
	if apierrors.IsConflict(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
		apierrors.IsTooManyRequests(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err) {
		return true
	}
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		code := se.Status().Code
		return code >= http.StatusInternalServerError || code == http.StatusTooManyRequests
	}
	// Transport failures (refused, reset, timed out) come as *url.Error,
	// a net.Error.
	var ne net.Error
	return errors.As(err, &ne)
}
