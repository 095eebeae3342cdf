package auditpolicy

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/golden"
	"github.com/vigil-k8s/vigil/policies"
)

// deployPolicy is the policy shipped in deploy/, generated from the
// built-in packs.
const deployPolicy = "../../deploy/audit-policy.yaml"

func customRules(t *testing.T) *detect.RuleSet {
	t.Helper()
	cat, err := detect.LoadPaths([]string{"testdata/rules/custom.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := detect.Compile(cat)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func builtinRules(t *testing.T) *detect.RuleSet {
	t.Helper()
	cat, err := policies.LoadBuiltin()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := detect.Compile(cat)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func loadFile(t *testing.T, path string) *Policy {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Load(data)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGenerate_Golden(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rules func(*testing.T) *detect.RuleSet
		files []string
	}{
		{"custom", customRules, []string{"testdata/golden/custom.yaml"}},
		{"builtin", builtinRules, []string{"testdata/golden/builtin.yaml", deployPolicy}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := tc.rules(t)
			g, err := Generate(rs)
			if err != nil {
				t.Fatal(err)
			}
			out, err := g.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, out, tc.files...)
			// Generating twice gives the same bytes.
			again, err := Generate(rs)
			if err != nil {
				t.Fatal(err)
			}
			out2, _ := again.Marshal()
			if !bytes.Equal(out, out2) {
				t.Error("output is not deterministic")
			}
		})
	}
}

// TestGenerate_Verified is the verification over every rule: the written
// policy, read back strictly and evaluated by the apiserver's evaluator,
// records every fire fixture event at the level its rule needs and the rule
// still fires on what is recorded; the only exceptions are needs capped by
// the protected default, which are reported degraded with the reason.
func TestGenerate_Verified(t *testing.T) {
	for name, rules := range map[string]func(*testing.T) *detect.RuleSet{"custom": customRules, "builtin": builtinRules} {
		t.Run(name, func(t *testing.T) {
			rs := rules(t)
			g, err := Generate(rs)
			if err != nil {
				t.Fatal(err)
			}
			out, err := g.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			p, err := Load(out)
			if err != nil {
				t.Fatalf("the generated policy does not load: %v\n%s", err, out)
			}
			rep, err := Check(p, rs)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Verdicts) != len(rs.Rules) {
				t.Fatalf("%d verdicts for %d rules", len(rep.Verdicts), len(rs.Rules))
			}
			if len(rep.Sensitive) > 0 {
				t.Errorf("the generated policy records credentials: %v", rep.Sensitive)
			}
			for _, v := range rep.Verdicts {
				capped := g.Degraded[v.Rule]
				switch {
				case v.Status == Covered && len(capped) == 0:
				case v.Status == Degraded && len(capped) > 0:
				default:
					t.Errorf("%s: %s (capped %v): %s", v.Rule, v.Status, capped, strings.Join(v.Reasons, "; "))
				}
			}
		})
	}
}

func TestGenerate_Custom(t *testing.T) {
	g, err := Generate(customRules(t))
	if err != nil {
		t.Fatal(err)
	}
	p, err := FromV1(g.Policy)
	if err != nil {
		t.Fatal(err)
	}
	admin := &user.DefaultInfo{Name: "kubernetes-admin", Groups: []string{"system:masters"}}
	node := &user.DefaultInfo{Name: "system:node:node-1", Groups: []string{"system:nodes"}}
	res := func(u user.Info, verb, group, resource, sub string) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{User: u, Verb: verb, APIGroup: group, Resource: resource, Subresource: sub, ResourceRequest: true}
	}
	url := func(u user.Info, path string) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{User: u, Verb: "get", Path: path}
	}
	for _, tc := range []struct {
		name  string
		attrs authorizer.AttributesRecord
		want  detect.Level
	}{
		{"secret create capped", res(admin, "create", "", "secrets", ""), detect.LevelMetadata},
		{"token request capped", res(admin, "create", "", "serviceaccounts", "token"), detect.LevelMetadata},
		{"token review capped", res(admin, "create", "authentication.k8s.io", "tokenreviews", ""), detect.LevelMetadata},
		{"pod create at Request", res(admin, "create", "", "pods", ""), detect.LevelRequest},
		{"pod get at catch-all", res(admin, "get", "", "pods", ""), detect.LevelMetadata},
		{"pods rule does not cover pods/exec", res(admin, "create", "", "pods", "exec"), detect.LevelMetadata},
		{"binding patch at RequestResponse", res(admin, "patch", "rbac.authorization.k8s.io", "rolebindings", ""), detect.LevelRequestResponse},
		{"binding get at catch-all", res(admin, "get", "rbac.authorization.k8s.io", "rolebindings", ""), detect.LevelMetadata},
		{"healthz claimed by a rule", url(nil, "/healthz"), detect.LevelMetadata},
		{"readyz dropped", url(admin, "/readyz"), detect.LevelNone},
		{"version dropped", url(admin, "/version"), detect.LevelNone},
		{"events read dropped", res(admin, "list", "", "events", ""), detect.LevelNone},
		{"events delete kept", res(admin, "delete", "", "events", ""), detect.LevelMetadata},
		{"lease renewal dropped", res(node, "update", "coordination.k8s.io", "leases", ""), detect.LevelNone},
		// A fixture showed a node's get of nodes is needed: that item left
		// the kubelet default, nodes/status stayed.
		{"node get kept", res(node, "get", "", "nodes", ""), detect.LevelMetadata},
		{"node status get dropped", res(node, "get", "", "nodes", "status"), detect.LevelNone},
		{"kube-proxy watch dropped", res(&user.DefaultInfo{Name: "system:kube-proxy"}, "watch", "", "endpoints", ""), detect.LevelNone},
		{"anyone else's watch kept", res(admin, "watch", "", "endpoints", ""), detect.LevelMetadata},
	} {
		if got := p.Evaluate(tc.attrs).Level; got != tc.want {
			t.Errorf("%s: level %s, want %s", tc.name, got, tc.want)
		}
	}
	if got := g.Degraded["manual-token-secret"]; len(got) != 1 || got[0] != "secrets" {
		t.Errorf("manual-token-secret capped on %v, want [secrets]", got)
	}
}

// TestCheck_Policies pins the verdicts for policies written from their
// public descriptions, against the custom rule set.
func TestCheck_Policies(t *testing.T) {
	rs := customRules(t)
	for _, tc := range []struct {
		file      string
		want      map[string]Status // rules not named are covered
		sensitive []int
		tripped   []string
		strict    []string
	}{
		{file: "k8s-docs-example.yaml",
			want: map[string]Status{"cluster-admin-binding": Degraded, "manual-token-secret": Degraded, "rbac-change": Degraded},
			// configmaps in kube-system at Request.
			sensitive: []int{5},
			strict:    []string{"cluster-admin-binding"}},
		{file: "gke-style.yaml",
			want: map[string]Status{"anonymous-health-probe": Blind, "events-deleted": Blind,
				"node-credential-from-kubectl": Blind, "manual-token-secret": Degraded},
			tripped: []string{"node-credential-from-kubectl"},
			strict:  []string{"node-credential-from-kubectl"}},
		{file: "all-metadata.yaml",
			want: map[string]Status{"cluster-admin-binding": Degraded, "manual-token-secret": Degraded,
				"privileged-pod": Degraded, "rbac-change": Degraded},
			strict: []string{"cluster-admin-binding", "privileged-pod"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			rep, err := Check(loadFile(t, filepath.Join("testdata/policies", tc.file)), rs)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range rep.Verdicts {
				want := tc.want[v.Rule]
				if v.Status != want {
					t.Errorf("%s: %s, want %s: %v", v.Rule, v.Status, want, v.Reasons)
				}
				if v.Status != Covered && len(v.Reasons) == 0 {
					t.Errorf("%s: %s without a reason", v.Rule, v.Status)
				}
			}
			var sens []int
			for _, f := range rep.Sensitive {
				sens = append(sens, f.Rule)
			}
			if !equalInts(sens, tc.sensitive) {
				t.Errorf("sensitive rules %v, want %v", sens, tc.sensitive)
			}
			if got := ids(rep.Tripped(false)); !equalStrings(got, tc.tripped) {
				t.Errorf("gate trips on %v, want %v", got, tc.tripped)
			}
			if got := ids(rep.Tripped(true)); !equalStrings(got, tc.strict) {
				t.Errorf("strict gate trips on %v, want %v", got, tc.strict)
			}
		})
	}
}

func TestCheck_BlindReasons(t *testing.T) {
	rep, err := Check(loadFile(t, "testdata/policies/gke-style.yaml"), customRules(t))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"anonymous-health-probe":       `event 1 (get /healthz): not recorded: rules[5] sets None`,
		"events-deleted":               `event 1 (delete events team-a/e1): not recorded: rules[6] sets None`,
		"node-credential-from-kubectl": `event 1 (get nodes node-1): not recorded: rules[1] sets None`,
		"manual-token-secret":          `recorded at Metadata by rules[9], the rule needs Request`,
	}
	for _, v := range rep.Verdicts {
		if w, ok := want[v.Rule]; ok && !strings.Contains(strings.Join(v.Reasons, "\n"), w) {
			t.Errorf("%s: reasons %q lack %q", v.Rule, v.Reasons, w)
		}
	}
}

// TestCheck_StageOmitted: an event of an omitted stage is not recorded,
// whatever the level.
func TestCheck_StageOmitted(t *testing.T) {
	p, err := Load([]byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [ResponseStarted]\nrules:\n- level: RequestResponse\n"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Check(p, customRules(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range rep.Verdicts {
		want := Covered
		if v.Rule == "exec-into-pod" {
			// Its fixture is the ResponseStarted event of a WebSocket exec.
			want = Blind
		}
		if v.Rule == "manual-token-secret" {
			continue
		}
		if v.Status != want {
			t.Errorf("%s: %s, want %s: %v", v.Rule, v.Status, want, v.Reasons)
		}
	}
	// RequestResponse for everything records every credential.
	if len(rep.Sensitive) != 1 || len(rep.Sensitive[0].Resources) != len(protected) {
		t.Errorf("sensitive %v, want rules[0] with every protected resource", rep.Sensitive)
	}
}

func TestLoad_Errors(t *testing.T) {
	for _, tc := range []struct {
		name, data, want string
	}{
		{"empty file", "", "the file is empty"},
		{"no rules", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n", "it has no rules"},
		{"mistyped field", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  resource:\n  - group: \"\"\n",
			`unknown field "rules[0].resource" (line 5)`},
		{"nested mistyped field", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n- level: Metadata\n  resources:\n  - group: \"\"\n    resourcenames: [x]\n",
			`unknown field "rules[1].resources[0].resourcenames" (line 8)`},
		{"duplicate field", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  level: None\n", `key "level" already set`},
		{"wrong type", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  verbs: get\n", "rules.verbs"},
		{"no apiVersion", "kind: Policy\nrules:\n- level: Metadata\n", "apiVersion"},
		{"old apiVersion", "apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules:\n- level: Metadata\n", "audit.k8s.io/v1beta1"},
		{"bad level", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything\n", `rules[0].level: Unsupported value: "Everything"`},
		{"resources and URLs", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  nonResourceURLs: [/healthz]\n  resources: [{group: \"\"}]\n",
			"rules cannot apply to both regular resources and non-resource URLs"},
		{"testdata empty", readFile(t, "testdata/policies/empty.yaml"), "it has no rules"},
		{"testdata mistyped", readFile(t, "testdata/policies/mistyped.yaml"), `unknown field "rules[0].resource" (line 8)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestAttributes_RealEvents(t *testing.T) {
	lines := sampleLines(t)
	var dec ingest.Decoder
	seen := map[string]bool{}
	for _, l := range lines {
		ev, err := dec.Decode(l)
		if err != nil {
			t.Fatal(err)
		}
		a := Attributes(ev)
		switch {
		case ev.ObjectRef.Subresource == "exec":
			seen["exec"] = true
			if !a.ResourceRequest || a.Resource != "pods" || a.Subresource != "exec" || strings.Contains(a.Path, "?") {
				t.Errorf("exec event: %+v", a)
			}
		case ev.ObjectRef.Resource == "" && ev.RequestURI != "":
			seen["non-resource"] = true
			if a.ResourceRequest || a.Path == "" || strings.Contains(a.Path, "?") {
				t.Errorf("non-resource event %s: %+v", ev.RequestURI, a)
			}
		}
		// The level the capture's own policy recorded is what that policy
		// gives the rebuilt attributes.
		if got := capturePolicy(t).Evaluate(a).Level.String(); got != ev.Level {
			t.Errorf("%s %s: the capture's policy gives %s, the apiserver recorded %s", ev.Verb, ev.RequestURI, got, ev.Level)
		}
	}
	if !seen["exec"] || !seen["non-resource"] {
		t.Errorf("sample lacks cases: %v", seen)
	}
	// A failed authentication has no user: rules with users never match.
	if a := Attributes(&ingest.Event{Verb: "list", ObjectRef: ingest.ObjectRef{Resource: "secrets"}}); a.User != nil {
		t.Errorf("no user: got %+v", a.User)
	}
}

// capturePolicy is the policy the sample was captured with (copied from
// the capture's README).
func capturePolicy(t *testing.T) *Policy {
	return loadFile(t, "testdata/policies/capture.yaml")
}

func TestSample(t *testing.T) {
	lines := sampleLines(t)
	var total int64
	for _, l := range lines {
		total += int64(len(l))
	}
	f, err := os.Open("testdata/sample-run5.jsonl.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := context.Background()

	// The capture's own policy keeps every event as it is.
	var same SampleStats
	if err := capturePolicy(t).Sample(ctx, f, "sample-run5.jsonl.gz", &same); err != nil {
		t.Fatal(err)
	}
	if same.Events != int64(len(lines)) || same.Bytes != total || same.KeptEvents != same.Events || same.KeptBytes != total {
		t.Errorf("capture policy: %+v, want all %d events and %d bytes kept", same, len(lines), total)
	}

	// Everything at Metadata keeps every event and removes every body.
	var meta SampleStats
	if err := loadFile(t, "testdata/policies/all-metadata.yaml").Sample(ctx, bytes.NewReader(bytes.Join(lines, []byte("\n"))), "plain", &meta); err != nil {
		t.Fatal(err)
	}
	var bodies int
	for _, l := range lines {
		if bytes.Contains(l, []byte(`"requestObject"`)) || bytes.Contains(l, []byte(`"responseObject"`)) {
			bodies++
		}
	}
	if bodies == 0 {
		t.Fatal("sample has no bodies")
	}
	if meta.KeptEvents != int64(len(lines)) || meta.KeptBytes >= total || meta.Raised != 0 {
		t.Errorf("all-metadata: %+v", meta)
	}
	// What is left is the size of the events without their bodies.
	var want int64
	for _, l := range lines {
		r, err := reduceJSON(l, detect.LevelMetadata)
		if err != nil {
			t.Fatal(err)
		}
		want += int64(len(r))
	}
	if diff := meta.KeptBytes - want; diff < -int64(len(lines))*40 || diff > int64(len(lines))*40 {
		t.Errorf("kept %d bytes, re-encoding the reduced events gives %d", meta.KeptBytes, want)
	}

	// The generated policy for the built-in packs drops the noise.
	g, err := Generate(builtinRules(t))
	if err != nil {
		t.Fatal(err)
	}
	p, err := FromV1(g.Policy)
	if err != nil {
		t.Fatal(err)
	}
	var gen SampleStats
	in := append(bytes.Join(lines, []byte("\n")), []byte("\nnot json\n")...)
	if err := p.Sample(ctx, bytes.NewReader(in), "mixed", &gen); err != nil {
		t.Fatal(err)
	}
	if gen.Events != int64(len(lines)) || gen.Skipped != 1 || !strings.HasPrefix(gen.FirstSkip, "mixed:"+strconv.Itoa(len(lines)+1)+":") {
		t.Errorf("events %d skipped %d (%s)", gen.Events, gen.Skipped, gen.FirstSkip)
	}
	if gen.KeptEvents >= gen.Events {
		t.Errorf("generated policy keeps all %d events of the sample", gen.Events)
	}
	var perRule int64
	for _, r := range gen.PerRule {
		perRule += r.Events
	}
	if perRule != gen.Events {
		t.Errorf("per-rule events sum to %d, want %d", perRule, gen.Events)
	}
	var text bytes.Buffer
	if err := gen.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"events/s", "kept:", "saved:", "skipped 1 lines"} {
		if !strings.Contains(text.String(), w) {
			t.Errorf("report lacks %q:\n%s", w, text.String())
		}
	}
}

func sampleLines(t *testing.T) [][]byte {
	t.Helper()
	f, err := os.Open("testdata/sample-run5.jsonl.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSpace(data), []byte("\n"))
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ids(vs []Verdict) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Rule)
	}
	return out
}

func equalStrings(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
