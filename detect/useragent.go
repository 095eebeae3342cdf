package detect

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// NoUserAgent is the family of a request that sent no user agent.
const NoUserAgent = "(none)"

// UserAgentFamily returns the client a user agent names, without its
// version, platform or build, lower-cased, so that upgrades do not look like
// new clients:
//
//   - client-go programs ("NAME/VERSION (OS/ARCH) kubernetes/COMMIT[/SUFFIX]")
//     by their binary: kubectl, kube-controller-manager (whatever controller
//     the suffix names), kubelet, helm, k9s, an operator's binary; a renamed
//     kubectl (kubectl.1.33, kubectl.exe) is kubectl;
//   - other clients by their product token: curl, python-requests,
//     go-http-client, prometheus;
//   - every web browser is "browser", Terraform "terraform" (its providers
//     send "HashiCorp/1.0 Terraform/VERSION"), the generated OpenAPI clients
//     "openapi-generator/LANGUAGE" (the official Python client);
//   - no user agent at all is NoUserAgent.
func UserAgentFamily(ua string) string {
	ua = strings.TrimSpace(ua)
	switch {
	case ua == "":
		return NoUserAgent
	case strings.HasPrefix(ua, "Mozilla/") || strings.HasPrefix(ua, "Opera/"):
		return "browser"
	case strings.Contains(ua, "Terraform/"):
		return "terraform"
	}
	product, rest, _ := strings.Cut(ua, "/")
	if i := strings.IndexByte(product, ' '); i >= 0 {
		product = product[:i]
	}
	product = strings.ToLower(product)
	if product == "openapi-generator" {
		// OpenAPI-Generator/29.0.0/python: the language tells the clients apart.
		if i := strings.LastIndexByte(rest, '/'); i >= 0 && i+1 < len(rest) {
			return product + "/" + strings.ToLower(rest[i+1:])
		}
	}
	product = strings.TrimSuffix(product, ".exe")
	return trimBinaryVersion(product)
}

// renamedBinary matches a binary renamed with its version: kubectl.1.33
// and kubectl-1.29.2 are kubectl. A version needs a dot, so names that end
// in digits (k3s, aws-sdk-go-v2) stay whole.
var renamedBinary = regexp.MustCompile(`^(.+?)[.-]v?[0-9]+(\.[0-9]+)+$`)

// trimBinaryVersion drops the version a binary was renamed with.
func trimBinaryVersion(name string) string {
	if name == "" || name[len(name)-1] < '0' || name[len(name)-1] > '9' {
		return name
	}
	if m := renamedBinary.FindStringSubmatch(name); m != nil {
		return m[1]
	}
	return name
}

// IPNetwork returns the network an address belongs to for baselines: its
// /24 for IPv4, its /64 for IPv6 (the usual size of one site), as a CIDR
// prefix. Anything that is not an address is returned as it is.
func IPNetwork(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	bits := 24
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p.String()
}

// baselineFuncs are the output-template functions of first_seen rules:
// {{ uaFamily .userAgent }}, and {{ elapsed .first .last }} for how long a
// key has been known.
var baselineFuncs = template.FuncMap{
	"uaFamily": UserAgentFamily,
	"elapsed":  elapsed,
}

// elapsed says how long from a to b, rounded down to the largest unit:
// "12 days", "1 day", "5 hours", "3 minutes".
func elapsed(a, b time.Time) string {
	d := b.Sub(a)
	unit := func(n int64, one string) string {
		if n == 1 {
			return "1 " + one
		}
		return strconv.FormatInt(n, 10) + " " + one + "s"
	}
	switch {
	case d >= 24*time.Hour:
		return unit(int64(d/(24*time.Hour)), "day")
	case d >= time.Hour:
		return unit(int64(d/time.Hour), "hour")
	case d >= time.Minute:
		return unit(int64(d/time.Minute), "minute")
	}
	return unit(max(int64(d/time.Second), 0), "second")
}
