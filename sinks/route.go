package sinks

import (
	"path"
	"slices"

	"github.com/vigil-k8s/vigil/detect"
)

// router decides which sinks an alert goes to. It is immutable after
// newRouter and safe for concurrent use.
type router struct {
	filters map[string]Filter
	// routed holds the sinks named in some route: only those are
	// restricted by the routes table.
	routed map[string]bool
	routes []RouteConfig
	def    []string
}

func newRouter(cfg Config) *router {
	r := &router{filters: map[string]Filter{}, routed: map[string]bool{}}
	for _, s := range cfg.Sinks {
		r.filters[s.Name] = s.Filter
	}
	for _, rt := range cfg.Routes {
		for _, s := range rt.Sinks {
			r.routed[s] = true
		}
		if rt.Default {
			r.def = rt.Sinks
			continue
		}
		r.routes = append(r.routes, rt)
	}
	return r
}

// wants reports whether sink name receives a.
func (r *router) wants(name string, a *detect.Alert) bool {
	f, ok := r.filters[name]
	if !ok || !f.pass(a) {
		return false
	}
	if !r.routed[name] {
		return true
	}
	return slices.Contains(r.routeSinks(a), name)
}

// routeSinks returns the sinks the routes table sends a to.
func (r *router) routeSinks(a *detect.Alert) []string {
	ns := ""
	if a.ObjectRef != nil {
		ns = a.ObjectRef.Namespace
	}
	var out []string
	matched := false
	for _, rt := range r.routes {
		if !anyGlob(rt.Namespaces, ns) {
			continue
		}
		matched = true
		out = append(out, rt.Sinks...)
		if !rt.Continue {
			break
		}
	}
	if !matched {
		return r.def
	}
	return out
}

// pass applies a sink's own filter.
func (f Filter) pass(a *detect.Alert) bool {
	if a.Severity < f.MinSeverity {
		return false
	}
	if matches(f.Exclude, a) {
		return false
	}
	if len(f.Include.Rules) == 0 && len(f.Include.Tags) == 0 {
		return true
	}
	return matches(f.Include, a)
}

func matches(m Match, a *detect.Alert) bool {
	if anyGlob(m.Rules, a.Rule) {
		return true
	}
	for _, t := range a.Tags {
		if anyGlob(m.Tags, t) {
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
