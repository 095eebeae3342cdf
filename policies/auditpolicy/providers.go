package auditpolicy

import (
	"bytes"
	"embed"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest/envelope"
)

//go:embed providers/*.yaml
var providerPolicies embed.FS

// Provider is a managed Kubernetes service's fixed audit pipeline: the
// policy its API servers run, what its log delivers of each event, and
// what else limits what vigil sees there.
type Provider struct {
	Name string
	// Doc is the provider's page the policy is taken from.
	Doc    string
	Policy *Policy
	// Lost are the event fields the provider's log does not carry; carry
	// rewrites an event as the log delivers it (nil: whole).
	Lost  []string
	carry func([]byte) ([]byte, error)
	// Notes say what the policy alone does not.
	Notes []string
}

// ProviderNames are the names LoadProvider accepts.
var ProviderNames = []string{"eks", "gke", "aks", "aks-admin"}

// GKELost are the audit event fields a GKE LogEntry does not carry.
var GKELost = []string{"level", "user.uid", "user.groups", "user.extra", "impersonatedUser", "requestURI",
	"sourceIPs (all but the first)", "objectRef.uid", "objectRef.resourceVersion", "responseStatus.status",
	"responseStatus.reason", "responseStatus.code (within its class: 201 and 101 read 200)", "stageTimestamp",
	"requestObject and responseObject that are not objects (JSON patches)"}

// LoadProvider returns a provider's audit pipeline.
func LoadProvider(name string) (*Provider, error) {
	pr := &Provider{Name: name}
	switch name {
	case "eks":
		pr.Doc = "https://docs.aws.amazon.com/eks/latest/best-practices/auditing-and-logging.html"
		pr.Notes = []string{"CloudWatch Logs cuts events over 256 KiB: vigil reads what was kept and marks them truncated"}
	case "gke":
		pr.Doc = "https://cloud.google.com/kubernetes-engine/docs/concepts/audit-policy"
		pr.Lost = GKELost
		pr.carry = carryGKE
		pr.Notes = []string{"get, list and watch events are Data Access logs, written only when Data Access audit logs are enabled for the Kubernetes Engine API (docs/sources.md)"}
	case "aks", "aks-admin":
		pr.Doc = "https://learn.microsoft.com/azure/azure-monitor/reference/tables/aksaudit"
		pr.Notes = []string{"AKS does not publish its audit levels; request and response objects too big to log are replaced by \"skipped-too-big-size-object\""}
		if name == "aks-admin" {
			pr.Doc = "https://learn.microsoft.com/azure/azure-monitor/reference/tables/aksauditadmin"
		}
	default:
		return nil, fmt.Errorf("unknown provider %q (want %s)", name, strings.Join(ProviderNames, ", "))
	}
	data, err := providerPolicies.ReadFile("providers/" + name + ".yaml")
	if err != nil {
		return nil, err
	}
	if pr.Policy, err = Load(data); err != nil {
		return nil, fmt.Errorf("%s audit policy: %w", name, err)
	}
	return pr, nil
}

// carryGKE rewrites an event as GKE's LogEntry delivers it: converted to
// the entry and read back. An event vigil cannot parse (nested too deep)
// is left as it is: what GKE makes of it is not known.
func carryGKE(event []byte) ([]byte, error) {
	enc, err := envelope.NewEncoder(&bytes.Buffer{}, envelope.GKE, envelope.EncodeOptions{})
	if err != nil {
		return nil, err
	}
	entry, ok, err := enc.GKEEntry(event)
	if err != nil {
		return event, nil
	}
	if !ok {
		return nil, nil
	}
	var out []byte
	d := envelope.Decoder{Format: envelope.GKE,
		Item: func(it envelope.Item) error { out = it.Data; return nil },
		Bad:  func(_ string, err error, _ []byte) error { return err }}
	if err := d.Value(entry, "fixture", false); err != nil {
		return event, nil
	}
	return out, nil
}

// carried applies the provider's rewrite to the events a policy kept.
func (c *fixtureCache) carried(kept [][]byte) ([][]byte, error) {
	if c.carry == nil {
		return kept, nil
	}
	out := make([][]byte, 0, len(kept))
	for i, e := range kept {
		ce, err := c.carry(e)
		if err != nil {
			return nil, fmt.Errorf("event %d as the provider delivers it: %w", i+1, err)
		}
		if ce != nil {
			out = append(out, ce)
		}
	}
	return out, nil
}

// CheckProvider evaluates a provider's policy against every enabled rule of
// rs, with the fixture events as the provider's log delivers them. A rule
// that the policy covers but that cannot fire on what the log carries is
// blind, and its reasons name the fields it reads that the log drops.
func CheckProvider(pr *Provider, rs *detect.RuleSet) (*Report, error) {
	rep, _, err := check(pr.Policy, rs, newFixtureCache())
	if err != nil || pr.carry == nil {
		return rep, err
	}
	cache := newFixtureCache()
	cache.carry = pr.carry
	carried, _, err := check(pr.Policy, rs, cache)
	if err != nil {
		return nil, err
	}
	for i, v := range carried.Verdicts {
		before := rep.Verdicts[i]
		if v.Status <= before.Status {
			continue
		}
		reads := readsLost(rs.Rule(v.Rule), pr.Lost)
		why := fmt.Sprintf("%s's log does not carry what the rule's fire fixtures need", strings.ToUpper(pr.Name))
		if len(reads) > 0 {
			why = fmt.Sprintf("%s's log does not carry %s, which the rule reads", strings.ToUpper(pr.Name), strings.Join(reads, ", "))
		}
		before.Status = Blind
		before.Reasons = append([]string{why}, before.Reasons...)
		rep.Verdicts[i] = before
	}
	for i, v := range carried.Verdicts {
		for _, w := range v.Warnings {
			if !slices.Contains(rep.Verdicts[i].Warnings, w) {
				rep.Verdicts[i].Warnings = append(rep.Verdicts[i].Warnings, w)
			}
		}
	}
	return rep, nil
}

// readsLost returns the lost fields a rule's expressions and output name
// (fields kept in part, such as the code's class, are left out).
func readsLost(r *detect.Rule, lost []string) []string {
	if r == nil {
		return nil
	}
	s := &r.Spec
	texts := append([]string{s.Match, s.Output}, s.Exceptions...)
	if w := s.Window; w != nil {
		texts = append(append(texts, w.By...), w.Distinct)
		for _, st := range w.Steps {
			texts = append(append(texts, st.Match), st.By...)
		}
	}
	all := strings.Join(texts, "\n")
	var out []string
	for _, f := range lost {
		if strings.Contains(f, " ") {
			continue
		}
		name := f
		if regexp.MustCompile(`(^|[^.\w])` + regexp.QuoteMeta(name) + `\b`).MatchString(all) {
			out = append(out, name)
		}
	}
	return slices.Compact(out)
}
