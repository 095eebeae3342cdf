package detect

import (
	"maps"
	"net/netip"
	"net/url"
	"path"
	"strings"
	"text/template"

	"github.com/expr-lang/expr"
)

// helperOptions returns the functions every expression may call. Lists are
// captured by the closures: they are fixed when a rule set is compiled.
func helperOptions(lists *compiledLists) []expr.Option {
	return []expr.Option{
		expr.Function("containers", func(p ...any) (any, error) { return containers(p[0]), nil },
			new(func(any) []any)),
		expr.Function("podSpec", func(p ...any) (any, error) { return podSpec(p[0]), nil },
			new(func(any) map[string]any)),
		expr.Function("patchObject", func(p ...any) (any, error) { return PatchObject(p[0]), nil },
			new(func(any) any)),
		expr.Function("imageRegistry", func(p ...any) (any, error) { return ImageRegistry(p[0].(string)), nil },
			new(func(string) string)),
		expr.Function("imageTag", func(p ...any) (any, error) { return ImageTag(p[0].(string)), nil },
			new(func(string) string)),
		expr.Function("execClass", func(p ...any) (any, error) { return execClassOf(p[0]), nil },
			new(func(any) string)),
		expr.Function("credentialKeys", func(p ...any) (any, error) { return CredentialKeys(p[0]), nil },
			new(func(any) []string)),
		expr.Function("glob", func(p ...any) (any, error) { return glob(p[1].(string), p[0].(string)), nil },
			new(func(string, string) bool)),
		expr.Function("hasAnyPrefix", func(p ...any) (any, error) {
			s := p[0].(string)
			for _, q := range p[1:] {
				if strings.HasPrefix(s, q.(string)) {
					return true, nil
				}
			}
			return false, nil
		}, new(func(string, ...string) bool)),
		expr.Function("inCIDR", func(p ...any) (any, error) { return inCIDR(p[0].(string), p[1].(string)), nil },
			new(func(string, string) bool)),
		expr.Function("isPrivateIP", func(p ...any) (any, error) { return isPrivateIP(p[0].(string)), nil },
			new(func(string) bool)),
		expr.Function("isLoopback", func(p ...any) (any, error) { return isLoopback(p[0].(string)), nil },
			new(func(string) bool)),
		expr.Function("inNetworks", func(p ...any) (any, error) { return lists.inNetworks(p[1].(string), p[0].(string)), nil },
			new(func(string, string) bool)),
		expr.Function("outsideNetworks", func(p ...any) (any, error) {
			return lists.outsideNetworks(p[1].(string), p[0].([]string)), nil
		}, new(func([]string, string) bool)),
		expr.Function("execCommand", func(p ...any) (any, error) { return ExecCommand(p[0].(string)), nil },
			new(func(string) string)),
		expr.Function("queryParam", func(p ...any) (any, error) { return queryParam(p[0].(string), p[1].(string)), nil },
			new(func(string, string) []string)),
		expr.Function("inList", func(p ...any) (any, error) { return lists.contains(p[1].(string), p[0].(string)), nil },
			new(func(string, string) bool)),
		expr.Function("userAgentFits", func(p ...any) (any, error) {
			return lists.agentFits(p[2].(string), p[0].(string), p[1].(string)), nil
		}, new(func(string, string, string) bool)),
		expr.Function("anyInList", func(p ...any) (any, error) {
			for _, s := range p[0].([]string) {
				if lists.contains(p[1].(string), s) {
					return true, nil
				}
			}
			return false, nil
		}, new(func([]string, string) bool)),
		expr.Function("subjects", func(p ...any) (any, error) { return Subjects(p[0]), nil },
			new(func(any) []string)),
		expr.Function("uaFamily", func(p ...any) (any, error) { return UserAgentFamily(p[0].(string)), nil },
			new(func(string) string)),
		expr.Function("ipNetwork", func(p ...any) (any, error) { return IPNetwork(p[0].(string)), nil },
			new(func(string) string)),
		expr.Function("identities", func(p ...any) (any, error) {
			return Identities(p[0].(string), p[1].([]string)), nil
		}, new(func(string, []string) []string)),
	}
}

// outputFuncs are the functions a rule's output template may call: those
// of every template and the expression helpers, with the same arguments
// ({{ execClass .execCommand }}, {{ inList .user.username "admins" }}).
func outputFuncs(lists *compiledLists) template.FuncMap {
	m := template.FuncMap{
		"containers": containers, "podSpec": podSpec, "patchObject": PatchObject,
		"imageRegistry": ImageRegistry, "imageTag": ImageTag, "execClass": execClassOf,
		"credentialKeys": CredentialKeys, "subjects": Subjects, "identities": Identities,
		"queryParam": queryParam, "inCIDR": inCIDR, "isPrivateIP": isPrivateIP, "isLoopback": isLoopback,
		"uaFamily": UserAgentFamily, "ipNetwork": IPNetwork,
		"glob": func(s, pattern string) bool { return glob(pattern, s) },
		"hasAnyPrefix": func(s string, prefixes ...string) bool {
			for _, p := range prefixes {
				if strings.HasPrefix(s, p) {
					return true
				}
			}
			return false
		},
		"inList":          func(s, list string) bool { return lists.contains(list, s) },
		"inNetworks":      func(ip, list string) bool { return lists.inNetworks(list, ip) },
		"outsideNetworks": func(ips []string, list string) bool { return lists.outsideNetworks(list, ips) },
		"userAgentFits":   func(user, agent, list string) bool { return lists.agentFits(list, user, agent) },
		"anyInList": func(ss []string, list string) bool {
			for _, s := range ss {
				if lists.contains(list, s) {
					return true
				}
			}
			return false
		},
	}
	maps.Copy(m, baselineFuncs)
	maps.Copy(m, templateFuncs)
	return m
}

// neverMissing are the helpers whose result text/template always prints
// (a string, a bool, a list or a map): the rest may yield no value.
var neverMissing = map[string]bool{
	"containers": true, "podSpec": true, "imageRegistry": true, "imageTag": true, "execClass": true,
	"credentialKeys": true, "subjects": true, "identities": true, "queryParam": true, "inCIDR": true,
	"isPrivateIP": true, "isLoopback": true, "ipNetwork": true, "glob": true, "hasAnyPrefix": true,
	"inList": true, "inNetworks": true, "outsideNetworks": true, "userAgentFits": true, "anyInList": true,
}

// compiledLists holds named lists split into exact entries (a set) and glob
// patterns (entries containing * ? or [), compiled once.
type compiledLists struct {
	exact map[string]map[string]struct{}
	globs map[string][]globPattern
	// nets are the entries of each list that parse as an address or a
	// CIDR prefix, for inNetworks and outsideNetworks.
	nets map[string][]netip.Prefix
	// pairs are the USER=AGENT entries of each list, for userAgentFits.
	pairs map[string][]agentPair
	// raw are the lists as written, for `in lists.NAME`.
	raw map[string][]string
}

// globPattern is a compiled glob: a plain prefix ("system:node:*"), parts
// split at * ("a*b*c"), or a general pattern with ? or [ for path.Match.
type globPattern struct {
	raw    string
	parts  []string
	prefix bool
	// general patterns contain ? or [; exact ones no glob character.
	general, exact bool
}

func compileGlob(p string) globPattern {
	g := globPattern{raw: p}
	switch {
	case !strings.ContainsAny(p, "*?["):
		g.exact = true
	case strings.ContainsAny(p, "?["):
		g.general = true
	case strings.Count(p, "*") == 1 && strings.HasSuffix(p, "*"):
		g.prefix, g.parts = true, []string{strings.TrimSuffix(p, "*")}
	default:
		g.parts = strings.Split(p, "*")
	}
	return g
}

func (g *globPattern) match(s string) bool {
	switch {
	case g.exact:
		return s == g.raw
	case g.prefix:
		return strings.HasPrefix(s, g.parts[0])
	case g.general:
		ok, err := path.Match(strings.ReplaceAll(g.raw, "/", "\x00"), strings.ReplaceAll(s, "/", "\x00"))
		return err == nil && ok
	}
	return starParts(g.parts, s)
}

func compileLists(lists map[string][]string) *compiledLists {
	c := &compiledLists{exact: map[string]map[string]struct{}{}, globs: map[string][]globPattern{},
		nets: map[string][]netip.Prefix{}, pairs: map[string][]agentPair{}, raw: lists}
	for name, items := range lists {
		set := make(map[string]struct{}, len(items))
		for _, it := range items {
			if p, ok := parseNetwork(it); ok {
				c.nets[name] = append(c.nets[name], p)
			}
			if u, a, ok := strings.Cut(it, "="); ok {
				c.pairs[name] = append(c.pairs[name], agentPair{user: compileGlob(u), agent: compileGlob(a)})
			}
			if strings.ContainsAny(it, "*?[") {
				c.globs[name] = append(c.globs[name], compileGlob(it))
			} else {
				set[it] = struct{}{}
			}
		}
		c.exact[name] = set
	}
	return c
}

func (c *compiledLists) has(name string) bool { _, ok := c.exact[name]; return ok }

func (c *compiledLists) contains(name, s string) bool {
	if _, ok := c.exact[name][s]; ok {
		return true
	}
	globs := c.globs[name]
	for i := range globs {
		if globs[i].match(s) {
			return true
		}
	}
	return false
}

// glob matches s against a shell pattern where * also crosses "/" and ":"
// (usernames such as system:serviceaccount:kube-system:* are the common case).
func glob(pattern, s string) bool {
	if !strings.ContainsAny(pattern, "*?[") {
		return pattern == s
	}
	g := compileGlob(pattern)
	return g.match(s)
}

// starParts matches s against a pattern split at its stars.
func starParts(parts []string, s string) bool {
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, last) && len(s) >= len(last)
}

func inCIDR(ip, cidr string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	p, err := netip.ParsePrefix(cidr)
	return err == nil && p.Contains(a.Unmap())
}

func isPrivateIP(ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	return a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast()
}

func isLoopback(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && a.Unmap().IsLoopback()
}

// ExecCommand returns the command of an exec request, decoded from the
// command= parameters of its requestURI and joined with spaces, or "".
func ExecCommand(requestURI string) string {
	return strings.Join(queryParam(requestURI, "command"), " ")
}

func queryParam(requestURI, name string) []string {
	i := strings.IndexByte(requestURI, '?')
	if i < 0 {
		return nil
	}
	q, err := url.ParseQuery(requestURI[i+1:])
	if err != nil && len(q) == 0 {
		return nil
	}
	return q[name]
}

// Subjects returns the identities a (Cluster)RoleBinding grants to, as
// "user:NAME" and "group:NAME"; a ServiceAccount subject becomes
// "user:system:serviceaccount:NS:NAME".
func Subjects(obj any) []string {
	m, _ := obj.(map[string]any)
	subs, _ := m["subjects"].([]any)
	var out []string
	for _, s := range subs {
		sm, _ := s.(map[string]any)
		kind, _ := sm["kind"].(string)
		name, _ := sm["name"].(string)
		switch kind {
		case "User":
			out = append(out, "user:"+name)
		case "Group":
			out = append(out, "group:"+name)
		case "ServiceAccount":
			ns, _ := sm["namespace"].(string)
			if ns == "" {
				ns, _ = dig(m, []string{"metadata", "namespace"}).(string)
			}
			out = append(out, "user:system:serviceaccount:"+ns+":"+name)
		}
	}
	return out
}

// Identities returns the keys a request's user answers to, in the form of
// Subjects: "user:NAME" and "group:G" for each group.
func Identities(username string, groups []string) []string {
	out := make([]string, 0, 1+len(groups))
	out = append(out, "user:"+username)
	for _, g := range groups {
		out = append(out, "group:"+g)
	}
	return out
}
