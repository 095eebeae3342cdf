package auditpolicy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/vigil-k8s/vigil/detect"
)

// Generated is a policy written for a rule set, with the comment that
// explains each of its rules and the verification report.
type Generated struct {
	Policy *auditv1.Policy
	// Report is the policy checked against the rule set it was written for.
	Report *Report
	// Degraded maps a detection to the protected resources its need was
	// capped on, by the safe defaults.
	Degraded map[string][]string
	// comments[i] explains Policy.Rules[i], one line per element.
	comments [][]string
	header   []string
	// origins[i] says which part of the generator wrote Policy.Rules[i].
	origins []origin
	rules   int
}

// Generate writes the smallest audit policy that records what every enabled
// rule of rs needs, on top of safe defaults:
//   - no RequestReceived stage (it only duplicates the later ones);
//   - secrets, configmaps, service-account tokens and token reviews at
//     Metadata at most, whatever a rule asks for (their bodies hold
//     credentials; such a rule is reported degraded);
//   - high-volume read-only system traffic at None (health probes,
//     kube-proxy and kubelet reads, leases, events reads), except what a
//     rule names or what a rule's fixtures show it needs;
//   - Metadata for everything else, so forensics keep who did what when.
//
// The result is verified with the apiserver's evaluator against every fire
// fixture of every enabled rule (see Check); a default that hides an event a
// fixture needs is narrowed until none does.
func Generate(rs *detect.RuleSet) (*Generated, error) {
	needs := collectNeeds(rs)
	noise := defaultNoise()
	for _, n := range needs {
		for i := range noise {
			noise[i].release(func(it noiseItem) bool { return n.claims(noise[i], it) }, n.rule)
		}
	}
	// Each round removes at least one noise item or stops, so the loop is
	// bounded by their number.
	cache := newFixtureCache()
	for {
		g := build(rs, needs, noise)
		p, err := FromV1(g.Policy)
		if err != nil {
			return nil, fmt.Errorf("BUG: generated policy is invalid: %w", err)
		}
		rep, missed, err := check(p, rs, cache)
		if err != nil {
			return nil, err
		}
		changed := false
		for _, m := range missed {
			j, ok := g.noiseAt(m.policyRule)
			if !ok {
				continue
			}
			changed = noise[j].release(func(it noiseItem) bool { return it.matches(noise[j], m.attrs) }, m.rule) || changed
		}
		if !changed {
			g.Report = rep
			for i, v := range rep.Verdicts {
				if caps := g.Degraded[v.Rule]; len(caps) > 0 {
					rep.Verdicts[i].Reasons = append([]string{fmt.Sprintf(
						"by design: %s are recorded at Metadata at most (their bodies hold credentials)", strings.Join(caps, ", "))},
						v.Reasons...)
					if v.Status == Covered {
						rep.Verdicts[i].Status = Degraded
					}
				}
			}
			return g, nil
		}
	}
}

// need is one part of a rule's audit block: resources, URLs or every
// request.
type need struct {
	rule  string
	level detect.Level
	// verbs are sorted; nil means all.
	verbs []string
	kind  needKind
	// groups maps an API group to resource patterns (kind resources).
	groups map[string][]string
	urls   []string
}

type needKind int

const (
	kindResources needKind = iota
	kindURLs
	kindAll
)

func collectNeeds(rs *detect.RuleSet) []need {
	var out []need
	for _, r := range rs.Rules {
		a := r.Spec.Audit
		base := need{rule: r.Spec.ID, level: a.Level, verbs: normVerbs(a.Verbs)}
		if len(a.Resources) > 0 {
			n := base
			n.groups = map[string][]string{}
			for _, gr := range a.Resources {
				res := gr.Resources
				if len(res) == 0 {
					res = []string{"*"}
				}
				n.groups[gr.Group] = append(n.groups[gr.Group], res...)
			}
			out = append(out, n)
		}
		if len(a.NonResourceURLs) > 0 {
			n := base
			n.kind, n.urls = kindURLs, slices.Clone(a.NonResourceURLs)
			out = append(out, n)
		}
		if len(a.Resources) == 0 && len(a.NonResourceURLs) == 0 {
			n := base
			n.kind = kindAll
			out = append(out, n)
		}
	}
	return out
}

// needRule is a policy rule that grants one level to what some rules need.
type needRule struct {
	level  detect.Level
	kind   needKind
	verbs  []string
	groups map[string][]string
	urls   []string
	// rules need it; also are rules whose lower-level need it covers.
	rules, also []string
}

// records reports whether r records everything lo records of what both
// select: a higher level with at least lo's verbs, or the same level with
// strictly more verbs (or every request of them).
func (r *needRule) records(lo *needRule) bool {
	switch {
	case !verbsCover(r.verbs, lo.verbs):
		return false
	case r.level != lo.level:
		return r.level > lo.level
	}
	return !verbsCover(lo.verbs, r.verbs) || (r.kind == kindAll && lo.kind != kindAll)
}

func (r *needRule) empty() bool {
	switch r.kind {
	case kindResources:
		return len(r.groups) == 0
	case kindURLs:
		return len(r.urls) == 0
	}
	return false
}

// covers reports whether r (a higher level) records everything of q's
// resource (group, pattern) or URL.
func (r *needRule) coversResource(group, pattern string) bool {
	if r.kind == kindAll {
		return true
	}
	for g, pats := range r.groups {
		if g != group && g != "*" {
			continue
		}
		for _, p := range pats {
			if patternCovers(p, pattern) {
				return true
			}
		}
	}
	return false
}

func (r *needRule) coversURL(u string) bool {
	if r.kind == kindAll {
		return true
	}
	for _, p := range r.urls {
		if p == u || p == "*" || (strings.HasSuffix(p, "*") && strings.HasPrefix(strings.TrimSuffix(u, "*"), strings.TrimSuffix(p, "*"))) {
			return true
		}
	}
	return false
}

// mergeNeeds groups the needs above Metadata into one policy rule per
// (level, kind, verbs), drops what a higher level already records, and
// returns the detections whose need was capped by the protected default.
func mergeNeeds(needs []need) ([]*needRule, map[string][]string) {
	degraded := map[string][]string{}
	byKey := map[string]*needRule{}
	var out []*needRule
	for _, n := range needs {
		if n.level <= detect.LevelMetadata {
			continue
		}
		key := fmt.Sprintf("%d/%d/%s", n.level, n.kind, strings.Join(n.verbs, ","))
		r := byKey[key]
		if r == nil {
			r = &needRule{level: n.level, kind: n.kind, verbs: n.verbs, groups: map[string][]string{}}
			byKey[key] = r
			out = append(out, r)
		}
		r.urls = append(r.urls, n.urls...)
		for g, pats := range n.groups {
			for _, p := range pats {
				if name, ok := protectedPattern(g, p); ok {
					degraded[n.rule] = append(degraded[n.rule], name)
					continue
				}
				r.groups[g] = append(r.groups[g], p)
			}
		}
	}
	for _, r := range out {
		r.normalize()
	}
	// A rule is narrowed by what rules of a higher level with at least its
	// verbs record (first match wins, and those come first), and by rules
	// of its own level that record more verbs.
	for _, lo := range out {
		for _, hi := range out {
			if hi == lo || !hi.records(lo) {
				continue
			}
			switch lo.kind {
			case kindResources:
				for g, pats := range lo.groups {
					pats = slices.DeleteFunc(pats, func(p string) bool { return hi.coversResource(g, p) })
					lo.groups[g] = pats
					if len(pats) == 0 {
						delete(lo.groups, g)
					}
				}
			case kindURLs:
				lo.urls = slices.DeleteFunc(lo.urls, hi.coversURL)
			case kindAll:
				if hi.kind == kindAll {
					lo.kind, lo.groups = kindResources, map[string][]string{}
				}
			}
		}
	}
	out = slices.DeleteFunc(out, (*needRule).empty)
	slices.SortStableFunc(out, func(a, b *needRule) int {
		return cmp.Or(cmp.Compare(b.level, a.level), cmp.Compare(a.kind, b.kind),
			strings.Compare(strings.Join(a.verbs, ","), strings.Join(b.verbs, ",")),
			strings.Compare(fmt.Sprint(a.groups, a.urls), fmt.Sprint(b.groups, b.urls)))
	})
	// Name on each policy rule the detections it serves: for every part of
	// a need, the first rule (in policy order) that records it.
	for _, n := range needs {
		if n.level <= detect.LevelMetadata {
			continue
		}
		serve := func(covers func(r *needRule) bool) {
			for _, r := range out {
				if r.level >= n.level && verbsCover(r.verbs, n.verbs) && covers(r) {
					if r.level == n.level {
						r.rules = append(r.rules, n.rule)
					} else {
						r.also = append(r.also, n.rule)
					}
					return
				}
			}
		}
		switch n.kind {
		case kindResources:
			for g, pats := range n.groups {
				for _, p := range pats {
					if _, ok := protectedPattern(g, p); !ok {
						serve(func(r *needRule) bool { return r.coversResource(g, p) })
					}
				}
			}
		case kindURLs:
			for _, u := range n.urls {
				serve(func(r *needRule) bool { return r.coversURL(u) })
			}
		case kindAll:
			serve(func(r *needRule) bool { return r.kind == kindAll })
		}
	}
	for _, r := range out {
		slices.Sort(r.rules)
		r.rules = slices.Compact(r.rules)
		slices.Sort(r.also)
		r.also = slices.Compact(r.also)
	}
	for id := range degraded {
		slices.Sort(degraded[id])
		degraded[id] = slices.Compact(degraded[id])
	}
	return out, degraded
}

// normalize sorts and dedups, dropping patterns another one covers.
func (r *needRule) normalize() {
	for g, pats := range r.groups {
		slices.Sort(pats)
		pats = slices.Compact(pats)
		pats = slices.DeleteFunc(pats, func(p string) bool {
			for _, q := range pats {
				if q != p && patternCovers(q, p) {
					return true
				}
			}
			return false
		})
		if g != "*" {
			pats = slices.DeleteFunc(pats, func(p string) bool {
				for _, q := range r.groups["*"] {
					if patternCovers(q, p) {
						return true
					}
				}
				return false
			})
		}
		if len(pats) == 0 {
			delete(r.groups, g)
			continue
		}
		r.groups[g] = pats
	}
	slices.Sort(r.urls)
	r.urls = slices.Compact(r.urls)
	r.urls = slices.DeleteFunc(r.urls, func(u string) bool {
		for _, p := range r.urls {
			if p != u && strings.HasSuffix(p, "*") && strings.HasPrefix(strings.TrimSuffix(u, "*"), strings.TrimSuffix(p, "*")) {
				return true
			}
		}
		return false
	})
}

// origin says where a generated policy rule comes from.
type origin struct {
	kind  string // protected, noise, need, catch-all
	noise int
}

// build assembles the policy: protected first (it caps whatever follows),
// then the noise defaults, the needs from the highest level down, and the
// catch-all.
func build(rs *detect.RuleSet, needs []need, noise []noiseRule) *Generated {
	g := &Generated{Policy: &auditv1.Policy{}, rules: len(rs.Rules)}
	g.Policy.APIVersion = auditv1.SchemeGroupVersion.String()
	g.Policy.Kind = "Policy"
	g.Policy.OmitStages = []auditv1.Stage{auditv1.StageRequestReceived}
	var origins []origin
	add := func(r auditv1.PolicyRule, o origin, comment []string) {
		g.Policy.Rules = append(g.Policy.Rules, r)
		g.comments = append(g.comments, comment)
		origins = append(origins, o)
	}
	merged, degraded := mergeNeeds(needs)
	g.Degraded = degraded

	// Who reads the protected resources, at which level.
	var protectedBy []string
	for _, n := range needs {
		for grp, pats := range n.groups {
			for _, p := range pats {
				if _, ok := protectedPattern(grp, p); ok {
					protectedBy = append(protectedBy, n.rule)
				}
			}
		}
	}
	slices.Sort(protectedBy)
	protectedBy = slices.Compact(protectedBy)
	pr := auditv1.PolicyRule{Level: auditv1.LevelMetadata}
	pr.Resources = []auditv1.GroupResources{
		{Group: "", Resources: []string{"secrets", "configmaps", "serviceaccounts/token"}},
		{Group: "authentication.k8s.io", Resources: []string{"tokenreviews"}},
	}
	comment := []string{"Metadata at most, whatever a detection asks for: secret and configmap bodies,",
		"issued service-account tokens and reviewed bearer tokens are credentials (CIS 3.2.2)."}
	comment = append(comment, wrapIDs("Needed by:", protectedBy)...)
	var capped []string
	for _, id := range sortedKeys(degraded) {
		capped = append(capped, fmt.Sprintf("%s (%s)", id, strings.Join(degraded[id], ", ")))
	}
	comment = append(comment, wrapIDs("Degraded on purpose, they need more:", capped)...)
	add(pr, origin{kind: "protected"}, comment)

	for j, nr := range noise {
		pr, ok := nr.policyRule()
		if !ok {
			continue
		}
		comment := []string{"None: " + nr.why + "."}
		comment = append(comment, wrapIDs("Left out because detections need them:", nr.claimedList())...)
		add(pr, origin{kind: "noise", noise: j}, comment)
	}

	for _, r := range merged {
		pr := auditv1.PolicyRule{Level: auditv1.Level(r.level.String()), Verbs: r.verbs}
		switch r.kind {
		case kindResources:
			for _, grp := range sortedKeys(r.groups) {
				pr.Resources = append(pr.Resources, auditv1.GroupResources{Group: grp, Resources: r.groups[grp]})
			}
		case kindURLs:
			pr.NonResourceURLs = r.urls
		}
		comment := wrapIDs(r.level.String()+" for:", r.rules)
		comment = append(comment, wrapIDs("Also covers the lower needs of:", r.also)...)
		add(pr, origin{kind: "need"}, comment)
	}

	var meta []string
	for _, n := range needs {
		if n.level == detect.LevelMetadata {
			meta = append(meta, n.rule)
		}
	}
	slices.Sort(meta)
	meta = slices.Compact(meta)
	comment = []string{"Metadata for everything else: who did what, when, for forensics."}
	comment = append(comment, wrapIDs("Metadata for:", meta)...)
	add(auditv1.PolicyRule{Level: auditv1.LevelMetadata}, origin{kind: "catch-all"}, comment)

	g.header = []string{
		"Audit policy for vigil, written by `vigil policy generate` from the enabled detections.",
		"Review it, then give it to kube-apiserver with --audit-policy-file. Regenerate it after",
		"changing rules instead of editing it, and gate changes with `vigil policy check`.",
		"Rules are evaluated in order; the first that matches a request sets its level.",
	}
	g.origins = origins
	return g
}

// noiseAt returns the noise default a policy rule index comes from.
func (g *Generated) noiseAt(i int) (int, bool) {
	if i < 0 || i >= len(g.origins) || g.origins[i].kind != "noise" {
		return 0, false
	}
	return g.origins[i].noise, true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// wrapIDs writes "label id, id, ..." over lines of about 90 characters;
// nothing when ids is empty.
func wrapIDs(label string, ids []string) []string {
	if len(ids) == 0 {
		return nil
	}
	var lines []string
	line := label
	for i, id := range ids {
		item := " " + id
		if i < len(ids)-1 {
			item += ","
		}
		if len(line)+len(item) > 90 && line != label {
			lines = append(lines, line)
			line = " "
		}
		line += item
	}
	return append(lines, line)
}
