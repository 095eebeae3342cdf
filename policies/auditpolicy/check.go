package auditpolicy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
)

// Status is what a policy leaves of one detection.
type Status int

// Statuses, from best to worst.
const (
	// Covered: every event the rule's fixtures need is recorded at the
	// level the rule needs, and the rule fires on them as recorded.
	Covered Status = iota
	// Unverified: the rule has no fire fixtures to verify the policy with.
	Unverified
	// Degraded: the events are recorded, but some below the level the rule
	// needs (bodies missing).
	Degraded
	// Blind: events the rule needs are not recorded at all.
	Blind
)

var statusNames = []string{"covered", "unverified", "degraded", "blind"}

func (s Status) String() string {
	if s < 0 || int(s) >= len(statusNames) {
		return fmt.Sprintf("Status(%d)", int(s))
	}
	return statusNames[s]
}

// MarshalText writes the status name (JSON).
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Verdict is the outcome for one enabled detection.
type Verdict struct {
	Rule     string          `json:"rule"`
	Severity detect.Severity `json:"severity"`
	// Need is the level the rule's audit block asks for.
	Need   detect.Level `json:"-"`
	Status Status       `json:"status"`
	// Reasons say which events are missing or reduced, and by which policy
	// rule.
	Reasons []string `json:"reasons,omitempty"`
	// Warnings are findings that do not make the rule blind, such as a
	// quiet fixture that fires once bodies are removed.
	Warnings []string `json:"warnings,omitempty"`
}

// Finding is a policy rule that records the bodies of resources holding
// credentials.
type Finding struct {
	// Rule is the policy rule's index.
	Rule      int
	Resources []string
	Level     detect.Level
	// Conditions are the rule's user, verb and namespace selectors, empty
	// when it applies to every request for the resources.
	Conditions string
}

func (f Finding) String() string {
	return fmt.Sprintf("rules[%d] records %s at %s%s: their bodies hold credentials, keep them at Metadata",
		f.Rule, strings.Join(f.Resources, ", "), f.Level, f.Conditions)
}

// Report is what a policy does for a rule set.
type Report struct {
	Verdicts  []Verdict
	Sensitive []Finding
}

// Count returns how many detections have the status.
func (r *Report) Count(s Status) int {
	n := 0
	for _, v := range r.Verdicts {
		if v.Status == s {
			n++
		}
	}
	return n
}

// Tripped returns the verdicts that fail a gate: blind detections of high
// or critical severity, and with strict also degraded ones.
func (r *Report) Tripped(strict bool) []Verdict {
	var out []Verdict
	for _, v := range r.Verdicts {
		if v.Severity < detect.SeverityHigh {
			continue
		}
		if v.Status == Blind || (strict && v.Status == Degraded) {
			out = append(out, v)
		}
	}
	return out
}

// protected are the resources whose bodies hold credentials: secret data,
// configmaps that often carry it, issued service-account tokens (in the
// response only) and the bearer tokens under review.
var protected = []struct {
	group, resource, name string
	// inRequest is set when the request body of a write carries the
	// credential, so Request level already records it.
	inRequest bool
}{
	{"", "secrets", "secrets", true},
	{"", "configmaps", "configmaps", true},
	{"", "serviceaccounts/token", "serviceaccounts/token", false},
	{"authentication.k8s.io", "tokenreviews", "tokenreviews.authentication.k8s.io", true},
}

// writeVerbs are the verbs whose request carries an object.
var writeVerbs = []string{"create", "update", "patch"}

// Sensitive lists the policy rules that may record a protected resource's
// body: above Metadata, before a rule that always caps it, for verbs that
// carry one at that level.
func (p *Policy) Sensitive() []Finding {
	byRule := map[int]*Finding{}
	for _, pr := range protected {
		for i, r := range p.rules {
			may, always := resourceMatch(r, pr.group, pr.resource)
			lvl := levelOf(r.Level)
			leaks := lvl == detect.LevelRequestResponse ||
				(lvl == detect.LevelRequest && pr.inRequest && verbsOverlap(normVerbs(r.Verbs), writeVerbs))
			if may && leaks {
				f := byRule[i]
				if f == nil {
					f = &Finding{Rule: i, Level: lvl, Conditions: describeRule(r)}
					byRule[i] = f
				}
				f.Resources = append(f.Resources, pr.name)
			}
			if always {
				break
			}
		}
	}
	var out []Finding
	for _, f := range byRule {
		out = append(out, *f)
	}
	slices.SortFunc(out, func(a, b Finding) int { return a.Rule - b.Rule })
	return out
}

// resourceMatch reports whether a policy rule may match some request for a
// resource (group, "res" or "res/sub"), and whether it matches every such
// request whoever makes it.
func resourceMatch(r auditinternal.PolicyRule, group, resource string) (may, always bool) {
	if len(r.Resources) == 0 {
		if len(r.NonResourceURLs) > 0 && len(r.Namespaces) == 0 {
			return false, false
		}
		may = true
		always = len(r.Namespaces) == 0
	}
	for _, gr := range r.Resources {
		if gr.Group != group && gr.Group != "*" {
			continue
		}
		if len(gr.Resources) == 0 {
			may, always = true, always || len(gr.ResourceNames) == 0
			continue
		}
		for _, pat := range gr.Resources {
			if patternMatches(pat, resource) {
				may = true
				always = always || len(gr.ResourceNames) == 0
			}
		}
	}
	unconditional := len(r.Users) == 0 && len(r.UserGroups) == 0 && len(r.Verbs) == 0 && len(r.Namespaces) == 0
	return may, may && always && unconditional
}

// patternMatches applies an audit policy resource pattern to "res" or
// "res/sub" as the apiserver does: "*" matches every resource and
// subresource, "res/*" every subresource of res, "*/sub" sub of any.
func patternMatches(pattern, resource string) bool {
	if pattern == "*" || pattern == resource {
		return true
	}
	res, sub, hasSub := strings.Cut(resource, "/")
	if !hasSub {
		return false
	}
	return pattern == "*/"+sub || pattern == res+"/*"
}

// eventOutcome is what a policy did with one fixture event.
type eventOutcome struct {
	index    int
	attrs    authorizer.AttributesRecord
	stage    string
	decision Decision
	recorded bool
	// stripped is set when the event carried a body the level removes.
	stripped bool
}

func (o eventOutcome) String() string {
	return fmt.Sprintf("event %d (%s)", o.index+1, describe(o.attrs))
}

// notRecorded says why an event is missing.
func (o eventOutcome) notRecorded() string {
	if o.decision.Level == detect.LevelNone {
		if o.decision.Rule < 0 {
			return "not recorded: no policy rule matches it (default None)"
		}
		return fmt.Sprintf("not recorded: %s sets None", o.decision.where())
	}
	return fmt.Sprintf("not recorded: stage %s is omitted by %s", o.stage, o.decision.where())
}

// reduce returns the events as the policy would have the apiserver write
// them: dropped at None or an omitted stage, without requestObject below
// Request and responseObject below RequestResponse.
func (p *Policy) reduce(events [][]byte, dec *ingest.Decoder) ([][]byte, []eventOutcome, error) {
	var kept [][]byte
	outs := make([]eventOutcome, 0, len(events))
	for i, data := range events {
		ev, err := dec.Decode(data)
		if err != nil {
			return nil, nil, fmt.Errorf("event %d: %w", i+1, err)
		}
		hasReq, hasResp := ev.HasRequestObject(), ev.HasResponseObject()
		// The outcome outlives the decoder's buffers: copy the strings.
		ev = ev.Clone()
		o := eventOutcome{index: i, attrs: Attributes(ev), stage: ev.Stage}
		o.decision = p.Evaluate(o.attrs)
		o.recorded = o.decision.Records(ev.Stage)
		if !o.recorded {
			outs = append(outs, o)
			continue
		}
		o.stripped = (o.decision.Level < detect.LevelRequest && hasReq) ||
			(o.decision.Level < detect.LevelRequestResponse && hasResp)
		out := data
		if o.stripped {
			if out, err = reduceJSON(data, o.decision.Level); err != nil {
				return nil, nil, fmt.Errorf("event %d: %w", i+1, err)
			}
		}
		kept = append(kept, out)
		outs = append(outs, o)
	}
	return kept, outs, nil
}

// reduceJSON removes the bodies a level does not record. The level field
// is left as it is: rules match on content, and an event whose bodies are
// all kept stays byte for byte the same.
func reduceJSON(data []byte, level detect.Level) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	if level < detect.LevelRequest {
		delete(m, "requestObject")
	}
	if level < detect.LevelRequestResponse {
		delete(m, "responseObject")
	}
	out, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	return out, nil
}

// maxReasons bounds the reasons listed per detection; the rest are counted.
const maxReasons = 6

// Check evaluates a policy against every enabled rule of rs: for each fire
// fixture event it takes the level the policy gives it, checks it against
// the rule's need, reduces the events to what would be recorded and checks
// the rule still raises the same alerts on them.
func Check(p *Policy, rs *detect.RuleSet) (*Report, error) {
	rep, _, err := check(p, rs, newFixtureCache())
	return rep, err
}

// missedEvent is a fire fixture event a policy does not record although
// the rule needs it.
type missedEvent struct {
	rule  string
	attrs authorizer.AttributesRecord
	// policyRule is the index of the rule that set None, -1 for none.
	policyRule int
}

// fixtureCache holds what does not depend on the policy: each fixture's
// events and the alerts they raise in full. Generate checks several
// candidate policies against the same fixtures.
type fixtureCache struct {
	dec    ingest.Decoder
	events map[*detect.Fixture][][]byte
	full   map[*detect.Fixture]int
	// carry rewrites kept events as a provider's log delivers them.
	carry func([]byte) ([]byte, error)
}

func newFixtureCache() *fixtureCache {
	return &fixtureCache{events: map[*detect.Fixture][][]byte{}, full: map[*detect.Fixture]int{}}
}

// fixture returns a fixture's events and the number of alerts rule id
// raises on them.
func (c *fixtureCache) fixture(rs *detect.RuleSet, id string, f *detect.Fixture) ([][]byte, int, error) {
	if ev, ok := c.events[f]; ok {
		return ev, c.full[f], nil
	}
	ev, err := detect.FixtureEvents(*f)
	if err != nil {
		return nil, 0, err
	}
	n, err := detect.CountAlerts(rs, id, ev)
	if err != nil {
		return nil, 0, fmt.Errorf("fixture %q: %w", f.Name, err)
	}
	c.events[f], c.full[f] = ev, n
	return ev, n, nil
}

func check(p *Policy, rs *detect.RuleSet, cache *fixtureCache) (*Report, []missedEvent, error) {
	rep := &Report{Sensitive: p.Sensitive()}
	var missed []missedEvent
	for _, r := range rs.Rules {
		v, m, err := checkRule(p, rs, r, cache)
		if err != nil {
			return nil, nil, fmt.Errorf("check rule %s (%s): %w", r.Spec.ID, r.Spec.File, err)
		}
		rep.Verdicts = append(rep.Verdicts, v)
		missed = append(missed, m...)
	}
	slices.SortStableFunc(rep.Verdicts, func(a, b Verdict) int { return strings.Compare(a.Rule, b.Rule) })
	return rep, missed, nil
}

func checkRule(p *Policy, rs *detect.RuleSet, r *detect.Rule, cache *fixtureCache) (Verdict, []missedEvent, error) {
	spec := &r.Spec
	v := Verdict{Rule: spec.ID, Severity: spec.Severity, Need: spec.Audit.Level}
	if len(spec.Fixtures.Fire) == 0 {
		v.Status = Unverified
		v.Reasons = append(v.Reasons, "the rule has no fire fixtures to verify the policy with")
		return v, nil, nil
	}
	sc := newScope(spec.Audit)
	var missed []missedEvent
	var reasons []string
	worst := Covered
	raise := func(s Status) { worst = max(worst, s) }
	for i := range spec.Fixtures.Fire {
		f := &spec.Fixtures.Fire[i]
		events, full, err := cache.fixture(rs, spec.ID, f)
		if err != nil {
			return v, nil, err
		}
		if full == 0 {
			reasons = append(reasons, fmt.Sprintf("fire fixture %q raises no alert even fully recorded (run vigil rules test)", f.Name))
			raise(Unverified)
			continue
		}
		kept, outs, err := p.reduce(events, &cache.dec)
		if err == nil {
			kept, err = cache.carried(kept)
		}
		if err != nil {
			return v, nil, fmt.Errorf("fire fixture %q: %w", f.Name, err)
		}
		got := full
		if changed(kept, events) {
			if got, err = detect.CountAlerts(rs, spec.ID, kept); err != nil {
				return v, nil, fmt.Errorf("fire fixture %q reduced to the policy: %w", f.Name, err)
			}
		}
		fires := got == full
		prefix := fmt.Sprintf("fire fixture %q %s: ", f.Name, "%s")
		var dropped, low bool
		for _, o := range outs {
			inScope := sc.matches(o.attrs)
			at := fmt.Sprintf("recorded at %s by %s", o.decision.Level, o.decision.where())
			switch {
			case !o.recorded && (inScope || !fires):
				dropped = true
				reasons = append(reasons, fmt.Sprintf(prefix, o)+o.notRecorded())
				missed = append(missed, missedEvent{rule: spec.ID, attrs: o.attrs, policyRule: o.decision.Rule})
			case !o.recorded:
			case inScope && o.decision.Level < spec.Audit.Level:
				low = true
				reasons = append(reasons, fmt.Sprintf(prefix, o)+fmt.Sprintf("%s, the rule needs %s", at, spec.Audit.Level))
			case !fires && o.stripped && inScope:
				low = true
				reasons = append(reasons, fmt.Sprintf(prefix, o)+fmt.Sprintf(
					"%s, which removes a body the rule reads: its audit block asks for %s, too little", at, spec.Audit.Level))
			case !fires && o.stripped:
				low = true
				reasons = append(reasons, fmt.Sprintf(prefix, o)+fmt.Sprintf(
					"%s without its bodies; the event is outside the rule's audit block (resources, verbs), so no policy generated from it records more", at))
			}
		}
		switch {
		case !fires && dropped:
			raise(Blind)
		case !fires && low:
			raise(Degraded)
		case !fires:
			// Nothing the policy did explains it: say so rather than call
			// the rule covered.
			reasons = append(reasons, fmt.Sprintf("fire fixture %q no longer fires when reduced to this policy", f.Name))
			raise(Blind)
		case dropped || low:
			raise(Degraded)
		}
		if !fires {
			reasons = append(reasons, fmt.Sprintf("fire fixture %q raises %d of its %d alerts as recorded", f.Name, got, full))
		}
	}
	for i := range spec.Fixtures.Quiet {
		w, err := checkQuiet(p, rs, spec.ID, &spec.Fixtures.Quiet[i], cache)
		if err != nil {
			return v, nil, err
		}
		if w != "" {
			v.Warnings = append(v.Warnings, w)
		}
	}
	v.Status = worst
	v.Reasons = capReasons(reasons)
	return v, missed, nil
}

// changed reports whether the policy dropped or reduced any event.
func changed(kept, events [][]byte) bool {
	if len(kept) != len(events) {
		return true
	}
	for i := range kept {
		if &kept[i][0] != &events[i][0] {
			return true
		}
	}
	return false
}

// checkQuiet reports a quiet fixture that fires once reduced: an exception
// that reads a body the policy drops turns into false positives.
func checkQuiet(p *Policy, rs *detect.RuleSet, id string, f *detect.Fixture, cache *fixtureCache) (string, error) {
	events, full, err := cache.fixture(rs, id, f)
	if err != nil || full > 0 {
		// A quiet fixture that fires in full is the rule's own bug, for
		// vigil rules test to report.
		return "", err
	}
	kept, _, err := p.reduce(events, &cache.dec)
	if err == nil {
		kept, err = cache.carried(kept)
	}
	if err != nil {
		return "", fmt.Errorf("quiet fixture %q: %w", f.Name, err)
	}
	if !changed(kept, events) {
		return "", nil
	}
	n, err := detect.CountAlerts(rs, id, kept)
	if err != nil {
		return "", fmt.Errorf("quiet fixture %q reduced to the policy: %w", f.Name, err)
	}
	if n > 0 {
		return fmt.Sprintf("quiet fixture %q raises %d alerts as recorded by this policy (its events lose bodies the rule reads): expect false positives", f.Name, n), nil
	}
	return "", nil
}

func capReasons(rs []string) []string {
	rs = slices.Compact(rs)
	if len(rs) > maxReasons {
		n := len(rs) - maxReasons
		rs = append(rs[:maxReasons:maxReasons], fmt.Sprintf("and %d more", n))
	}
	return rs
}
