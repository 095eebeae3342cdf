package detect

import (
	"net/netip"
	"regexp"
	"sort"
	"strings"
)

// parseNetwork reads a list entry as a CIDR prefix or a single address.
func parseNetwork(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), true
	}
	return netip.Prefix{}, false
}

// inNetworks reports whether ip lies in one of the networks (CIDR or
// address entries) of the named list.
func (c *compiledLists) inNetworks(list, ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range c.nets[list] {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// outsideNetworks reports whether any of the addresses lies outside every
// network of the named list. A request's sourceIPs hold the client and the
// proxies it passed; the apiserver takes the first from X-Forwarded-For,
// which the client controls, so one address outside is enough and one
// inside proves nothing. An unparsable address is outside; a list with no
// networks makes no judgement (false).
func (c *compiledLists) outsideNetworks(list string, ips []string) bool {
	if len(c.nets[list]) == 0 {
		return false
	}
	for _, ip := range ips {
		if !c.inNetworks(list, ip) {
			return true
		}
	}
	return false
}

// agentPair is a USER=AGENT list entry: the user agent (a glob) that a
// user name (a glob) sends from its own program.
type agentPair struct {
	user, agent globPattern
}

// agentFits reports whether a list of USER=AGENT entries has one whose user
// matches username and whose agent matches userAgent.
func (c *compiledLists) agentFits(list, username, userAgent string) bool {
	pairs := c.pairs[list]
	for i := range pairs {
		if pairs[i].user.match(username) && pairs[i].agent.match(userAgent) {
			return true
		}
	}
	return false
}

// credentialKeyWords are key names (lower case, separators removed) that
// hold credentials.
var credentialKeyWords = []string{"password", "passwd", "passphrase", "secretkey", "secretaccesskey",
	"accesskey", "accesskeyid", "apikey", "privatekey", "clientsecret", "authtoken", "accesstoken",
	"apitoken", "bearertoken", "refreshtoken", "credentials", "connectionstring", "dbpass"}

// notCredentialKeys are key names that contain one of the words but name a
// setting, not a secret.
var notCredentialKeys = regexp.MustCompile(`(policy|length|minlength|maxlength|expiry|expiration|ttl|file|path|ref|name|secretname|enabled|required|hint|mode|rotation|header)$`)

// credentialValue matches credentials inside a value: cloud access key ids,
// private keys, and key=value or key: value lines whose key names one.
var credentialValue = regexp.MustCompile(`(?i)(\b(AKIA|ASIA)[0-9A-Z]{16}\b|-----BEGIN [A-Z ]*PRIVATE KEY-----|` +
	`\b(aws_secret_access_key|aws_access_key_id|aws-access-key-id|aws_s3_access_key_id|password|passwd|passphrase|api[_-]?key|client[_-]?secret|secret[_-]?key|auth[_-]?token|access[_-]?token)\b["']?\s*[:=]\s*["']?[^\s"'$<{]{3,}|` +
	`\b(xox[abpr]-[0-9A-Za-z-]{10,}|gh[pousr]_[0-9A-Za-z]{30,}|glpat-[0-9A-Za-z_-]{20,}))`)

// CredentialKeys returns the keys of a ConfigMap (data and binaryData; a
// patch is read as PatchObject does) whose name or value looks like a
// credential: passwords, cloud access keys, private keys, API tokens.
// Values that are empty, numbers, booleans or templates (${X}, {{ .x }})
// do not count.
func CredentialKeys(obj any) []string {
	m, _ := PatchObject(obj).(map[string]any)
	if m == nil {
		return nil
	}
	var out []string
	for _, field := range []string{"data", "binaryData", "stringData"} {
		data, _ := m[field].(map[string]any)
		for k, v := range data {
			s, _ := v.(string)
			if credentialKey(k, s) || (field != "binaryData" && credentialValue.MatchString(s)) {
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

func credentialKey(key, value string) bool {
	norm := strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			return r
		}
		return -1
	}, key)
	named := false
	for _, w := range credentialKeyWords {
		if strings.Contains(norm, w) {
			named = true
			break
		}
	}
	if !named || notCredentialKeys.MatchString(norm) {
		return false
	}
	v := strings.TrimSpace(value)
	switch {
	case len(v) < 3, v == "true", v == "false", isDigits(v),
		strings.HasPrefix(v, "${"), strings.HasPrefix(v, "{{"), strings.HasPrefix(v, "<"):
		return false
	}
	return true
}
