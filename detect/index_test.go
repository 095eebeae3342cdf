package detect

import (
	"testing"

	"github.com/vigil-k8s/vigil/ingest"
)

// TestPrefilter checks that the constant conditions found in a match are
// exactly as strict as the expression: an event they reject never matches,
// and they reject what they can.
func TestPrefilter(t *testing.T) {
	ev := func(verb, resource, sub, user string, code int) *ingest.Event {
		return &ingest.Event{Verb: verb, User: ingest.UserInfo{Username: user},
			ObjectRef: ingest.ObjectRef{Resource: resource, Subresource: sub}, ResponseStatus: ingest.Status{Code: code}}
	}
	cases := []struct {
		match string
		ev    *ingest.Event
		pass  bool
	}{
		{`objectRef.resource == "secrets" && verb in ["get", "list"]`, ev("get", "secrets", "", "a", 200), true},
		{`objectRef.resource == "secrets" && verb in ["get", "list"]`, ev("watch", "secrets", "", "a", 200), false},
		{`"secrets" == objectRef.resource`, ev("get", "pods", "", "a", 200), true}, // reversed operands are not indexed
		{`responseStatus.code == 403`, ev("get", "pods", "", "a", 200), false},
		{`responseStatus.code in [401, 403]`, ev("get", "pods", "", "a", 401), true},
		{`responseStatus.code < 400`, ev("get", "pods", "", "a", 0), true},
		{`responseStatus.code < 400`, ev("get", "pods", "", "a", 404), false},
		{`responseStatus.code >= 400 && objectRef.subresource == "exec"`, ev("get", "pods", "exec", "a", 403), true},
		{`responseStatus.code >= 400 && objectRef.subresource == "exec"`, ev("get", "pods", "", "a", 403), false},
		{`impersonatedUser.username != ""`, ev("get", "pods", "", "a", 200), false},
		{`user.username != "" || verb == "get"`, ev("get", "pods", "", "", 200), true}, // || is not indexed
		{`!(verb == "get")`, ev("get", "pods", "", "", 200), false},
		{`!(verb == "get")`, ev("list", "pods", "", "", 200), true},
		{`verb not in ["get", "list"]`, ev("list", "pods", "", "", 200), false},
		{`user.username startsWith "system:node:"`, ev("get", "pods", "", "system:nodes", 200), false},
		{`user.username startsWith "system:node:"`, ev("get", "pods", "", "system:node:n1", 200), true},
		{`not (user.username startsWith "system:")`, ev("get", "pods", "", "system:node:n1", 200), false},
		{`user.username endsWith ":default"`, ev("get", "pods", "", "system:serviceaccount:a:default", 200), true},
		{`inList(user.username, "admins")`, ev("get", "pods", "", "ops-anna", 200), true},
		{`inList(user.username, "admins")`, ev("get", "pods", "", "anna", 200), false},
		{`!inList(user.username, "admins")`, ev("get", "pods", "", "root", 200), false},
		{`responseStatus.code != 401`, ev("get", "pods", "", "a", 401), false},
		{`responseStatus.code != 401`, ev("get", "pods", "", "a", 0), true},
		{`verb != "get"`, ev("get", "pods", "", "a", 0), false},
		{`objectRef.resource in ["pods", "a", "b", "c", "d", "e"]`, ev("get", "e", "", "a", 0), true},
		{`objectRef?.resource == "pods"`, ev("get", "secrets", "", "", 200), true}, // optional chains are not indexed
	}
	for _, c := range cases {
		_, checks, _ := matchConstraints(c.match, compileLists(map[string][]string{"admins": {"root", "ops-*"}}))
		r := &Rule{checks: checks}
		if got := r.prefilter(&evalCtx{ev: c.ev}); got != c.pass {
			t.Errorf("%s on %+v: prefilter %v, want %v", c.match, c.ev, got, c.pass)
		}
	}
}

func TestGlob(t *testing.T) {
	cases := []struct {
		pattern, s string
		want       bool
	}{
		{"system:node:*", "system:node:node-1", true},
		{"system:node:*", "system:nodes", false},
		{"system:serviceaccount:*:default", "system:serviceaccount:kube-system:default", true},
		{"system:serviceaccount:*:default", "system:serviceaccount:kube-system:deployer", false},
		{"*.example.com/*", "registry.example.com/app:v1", true},
		{"*", "", true},
		{"a*b*c", "abc", true},
		{"a*b*c", "acb", false},
		{"kube-?roxy", "kube-proxy", true},
		{"img:v[0-9]", "img:v7", true},
		{"exact", "exact", true},
		{"exact", "exactly", false},
	}
	for _, c := range cases {
		if got := glob(c.pattern, c.s); got != c.want {
			t.Errorf("glob(%q, %q) = %v, want %v", c.pattern, c.s, got, c.want)
		}
	}
	lists := compileLists(map[string][]string{"cp": {"system:kube-scheduler", "system:node:*", "system:serviceaccount:kube-system:*"}})
	for s, want := range map[string]bool{"system:kube-scheduler": true, "system:node:n1": true,
		"system:serviceaccount:kube-system:x": true, "system:serviceaccount:ci:x": false, "alice": false} {
		if got := lists.contains("cp", s); got != want {
			t.Errorf("contains(cp, %q) = %v, want %v", s, got, want)
		}
	}
}

// TestMatchByChecks: a match made only of constant conditions is decided
// by them and the expression never runs; anything else keeps it.
func TestMatchByChecks(t *testing.T) {
	for src, want := range map[string]bool{
		`objectRef.resource == "pods" && objectRef.subresource == "exec" && verb in ["get", "create"]`: true,
		`responseStatus.code >= 400 && user.username != ""`:                                            true,
		`objectRef.resource == "pods" && inList(user.username, "admins")`:                              true,
		`objectRef.resource == "pods" && inList(user.username, "nope")`:                                false,
		`verb == "get" || verb == "list"`:                                                              false,
		`!(verb == "get")`:                                                                             true,
		`user.username startsWith "system:" && !(user.username startsWith "system:node:")`:             true,
		`responseStatus.code != 401 && objectRef.name endsWith "-admin"`:                               true,
		`user.username startsWith objectRef.name`:                                                      false,
	} {
		if _, _, got := matchConstraints(src, compileLists(map[string][]string{"admins": {"root"}})); got != want {
			t.Errorf("%s: complete %v, want %v", src, got, want)
		}
	}
}
