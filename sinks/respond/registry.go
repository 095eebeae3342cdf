package respond

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/vigil-k8s/vigil/detect"
)

// registry lists the action types, in the order docs and errors name them.
// An action type is its params (yaml tags and Validate), how it finds its
// target in an alert, how it runs and is undone, and the permissions it
// needs; docs/responses.md has a row for it in the tables of actions and
// of permissions (checked by a test).
var registry = []actionType{
	{name: "quarantine-pod", params: func() Params { return &QuarantineParams{} }, target: fromTarget(podTarget, credentialPod),
		run: runQuarantine, undo: undoQuarantine, rules: quarantineRules},
	{name: "scale-to-zero", params: func() Params { return &FromParams{} }, target: fromTarget(workloadTarget, credentialPod),
		run: runScale, undo: undoScale, rules: scaleRules},
	{name: "revoke-binding", params: func() Params { return &RevokeParams{} }, target: revokeTarget,
		run: runRevoke, undo: undoBindings, rules: revokeRules},
	{name: "delete-token-secret", params: func() Params { return &NoParams{} }, target: anyParams(tokenSecretTarget),
		run: runDeleteTokens, undo: undoDeleteTokens, rules: tokenRules},
	{name: "disable-serviceaccount", params: func() Params { return &DisableParams{} }, target: anyParams(serviceAccountTarget),
		run: runDisable, undo: undoDisable, rules: disableRules},
	{name: "cordon-node", params: func() Params { return &FromParams{} }, target: fromTarget(nodeTarget, credentialNode),
		run: runCordon, undo: undoCordon, rules: cordonRules},
	{name: "annotate", params: func() Params { return &AnnotateParams{} }, target: anyParams(objectTarget),
		run: runAnnotate, undo: undoAnnotate, rules: annotateRules},
	{name: "webhook", params: func() Params { return &WebhookParams{} }, target: anyParams(optionalTarget),
		run: runWebhook, undo: undoWebhook, rules: func() []rbacv1.PolicyRule { return nil }, offline: true},
}

// actionType is one entry of the registry.
type actionType struct {
	name string
	// params returns new, empty params to decode the type's keys into.
	params func() Params
	// target finds what the action works on in the alert, without the
	// cluster; a *noTarget error means there is nothing.
	target func(al *detect.Alert, p Params) (Target, error)
	// run reads the target's state into the record's Before (unless
	// resuming, when Before is the state first seen), checks what only the
	// cluster shows and, when enforcing, makes the change. It returns what
	// it changed (or would change) and whether anything needed changing.
	run func(ctx context.Context, x *execution) (detail string, changed bool, err error)
	// undo puts back the record's Before.
	undo func(ctx context.Context, u *undoing) (detail string, err error)
	// rules are the permissions run and undo need.
	rules func() []rbacv1.PolicyRule
	// offline actions need no cluster.
	offline bool
}

// anyParams adapts a target finder that needs no params.
func anyParams(f func(*detect.Alert) (Target, error)) func(*detect.Alert, Params) (Target, error) {
	return func(al *detect.Alert, _ Params) (Target, error) { return f(al) }
}

// execution is one action being carried out.
type execution struct {
	c       *Cluster
	g       *Guard
	p       Params
	al      *detect.Alert
	rec     *Record
	enforce bool
	// resumed is set when a started record is being finished: Before is
	// what the first attempt saw.
	resumed bool
	// begin writes the started record (with Before) before the first
	// change, so a crash after it leaves what Undo needs.
	begin func(ctx context.Context) error
}

// state fills v: from the record when resuming, else by read, and stores
// it as the record's Before.
func (x *execution) state(v any, read func() error) error {
	if x.resumed {
		if err := json.Unmarshal(x.rec.Before, v); err != nil {
			return fmt.Errorf("read recorded state of %s: %w", x.rec.ID, err)
		}
		return nil
	}
	if err := read(); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	x.rec.Before = b
	return nil
}

// undoing is one undo being carried out.
type undoing struct {
	c   *Cluster
	rec Record
	p   Params
	now time.Time
}

// before decodes the record's Before into v.
func (u *undoing) before(v any) error {
	if len(u.rec.Before) == 0 {
		return fmt.Errorf("record %s has no recorded state to restore", u.rec.ID)
	}
	if err := json.Unmarshal(u.rec.Before, v); err != nil {
		return fmt.Errorf("read recorded state of %s: %w", u.rec.ID, err)
	}
	return nil
}

// NoParams are the params of actions that have none.
type NoParams struct{}

// Validate accepts the empty params.
func (*NoParams) Validate() error { return nil }

// lookupAction returns the registry entry of a type name.
func lookupAction(name string) (actionType, bool) {
	for _, t := range registry {
		if t.name == name {
			return t, true
		}
	}
	return actionType{}, false
}

// actionNames lists the types for an error message: "a, b ... or c".
func actionNames() string {
	names := make([]string, len(registry))
	for i, t := range registry {
		names[i] = t.name
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// matches reports whether the alert passes every list of m.
func (m Match) matches(al *detect.Alert) bool {
	if al.Severity < m.MinSeverity {
		return false
	}
	if len(m.Rules) > 0 && !anyGlob(m.Rules, al.Rule) {
		return false
	}
	if len(m.Tags) > 0 && !anyTag(m.Tags, al.Tags) {
		return false
	}
	return len(m.Namespaces) == 0 || anyGlob(m.Namespaces, ref(al).Namespace)
}

func anyTag(globs, tags []string) bool {
	for _, t := range tags {
		if anyGlob(globs, t) {
			return true
		}
	}
	return false
}

func anyGlob(globs []string, s string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, s); ok {
			return true
		}
	}
	return false
}
