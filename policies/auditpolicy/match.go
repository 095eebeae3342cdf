package auditpolicy

import (
	"slices"
	"strings"
)

// What a need asks for against what a policy rule selects: verb sets,
// resource patterns and URL patterns.

// normVerbs sorts a verb set without repeats; nil stands for every verb.
func normVerbs(vs []string) []string {
	if len(vs) == 0 || slices.Contains(vs, "*") {
		return nil
	}
	out := slices.Clone(vs)
	slices.Sort(out)
	return slices.Compact(out)
}

// verbsCover reports whether verb set a includes b (nil is every verb).
func verbsCover(a, b []string) bool {
	if a == nil {
		return true
	}
	if b == nil {
		return false
	}
	for _, v := range b {
		if !slices.Contains(a, v) {
			return false
		}
	}
	return true
}

func verbsOverlap(a, b []string) bool {
	if a == nil || b == nil {
		return true
	}
	for _, v := range a {
		if slices.Contains(b, v) {
			return true
		}
	}
	return false
}

// claims reports whether the need names a noise item itself. Wildcards do
// not count: a rule that reads every resource does not need health probes;
// its fixtures say so if it does.
func (n need) claims(nr noiseRule, it noiseItem) bool {
	if !verbsOverlap(n.verbs, nr.verbs) {
		return false
	}
	switch n.kind {
	case kindURLs:
		if it.url == "" {
			return false
		}
		for _, u := range n.urls {
			if u != "*" && urlsOverlap(u, it.url) {
				return true
			}
		}
	case kindResources:
		if it.url != "" {
			return false
		}
		for _, pat := range n.groups[it.group] {
			if pat != "*" && !strings.HasPrefix(pat, "*/") && patternMatches(pat, it.resource) {
				return true
			}
		}
	}
	return false
}

func urlsOverlap(a, b string) bool {
	pa, wa := strings.CutSuffix(a, "*")
	pb, wb := strings.CutSuffix(b, "*")
	switch {
	case wa && wb:
		return strings.HasPrefix(pa, pb) || strings.HasPrefix(pb, pa)
	case wa:
		return strings.HasPrefix(b, pa)
	case wb:
		return strings.HasPrefix(a, pb)
	}
	return a == b
}

// patternCovers reports whether resource pattern p matches everything
// pattern q matches.
func patternCovers(p, q string) bool {
	switch {
	case p == q || p == "*":
		return true
	case q == "*":
		return false
	case strings.HasSuffix(p, "/*"):
		return strings.HasPrefix(q, strings.TrimSuffix(p, "*")) && !strings.HasPrefix(q, "*/")
	case strings.HasPrefix(p, "*/"):
		_, sub, ok := strings.Cut(q, "/")
		return ok && "*/"+sub == p
	}
	return false
}

// protectedPattern reports whether a need's resource pattern names a
// protected resource exactly (and which).
func protectedPattern(group, pattern string) (string, bool) {
	for _, pr := range protected {
		if pr.group == group && pr.resource == pattern {
			return pr.name, true
		}
	}
	return "", false
}
