package sinks

import (
	"net/url"
	"regexp"
	"strings"
	"sync"

	"github.com/vigil-k8s/vigil/detect"
)

// Redacted replaces secret material in alerts.
const Redacted = "[REDACTED]"

// Alerts carry no request or response bodies, but a rule's output template
// can print objects, a requestURI can carry a token in its query and an
// exec command can carry a password. Redact scrubs what such values look
// like wherever they appear: the data of secrets and configmaps as a
// template prints them, values of credential-named keys, bearer and basic
// credentials, JWTs (service-account and bound tokens), private keys and
// the well-known API key formats.
var (
	// privateKey matches a PEM private key, also one cut short.
	privateKey = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?s:.*?)(-----END [A-Z0-9 ]*PRIVATE KEY-----|$)`)
	// urlPassword matches the password of scheme://user:password@host.
	urlPassword = regexp.MustCompile(`(://[^/\s:@]+:)[^/\s@]+@`)
	jwt         = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*`)
	authScheme  = regexp.MustCompile(`(?i)\b(bearer|basic)(\s+|%20|\+)[A-Za-z0-9._~+/=%-]{6,}`)
	// dataMap matches the data of a secret or configmap printed by a
	// template (map[...]) or as JSON ({...}).
	dataMap = regexp.MustCompile(`(?i)\b((?:string|binary)?data)("?\s*:\s*)(map\[[^\]]*\]|\{[^}]*\})`)
	// keyValue matches key=value and key:value where the key names a
	// credential.
	keyValue = regexp.MustCompile(`(?i)([A-Za-z0-9_.-]*(?:passw(?:or)?d|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential|auth)[A-Za-z0-9_.-]*)("?\s*[:=]\s*"?|%3D)([^\s"'&,;\]\)}]+)`)
	// knownKeys are provider key formats: AWS access key ids, GitHub,
	// Slack and Stripe tokens, Google API keys, Kubernetes bootstrap
	// tokens.
	knownKeys = regexp.MustCompile(`\b(AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|xox[abprs]-[A-Za-z0-9-]{10,}|[rs]k_(?:live|test)_[A-Za-z0-9]{10,}|AIza[0-9A-Za-z_-]{35}|[a-z0-9]{6}\.[a-z0-9]{16})\b`)
)

// notCredentialKeys are key names the keyValue pattern would catch that
// name things, not hold secrets: the secret names in an alert are what the
// analyst needs.
var notCredentialKeys = map[string]bool{
	"secrets": true, "secret": true, "secretname": true, "secretnames": true, "secretref": true,
	"tokenreviews": true, "serviceaccounts/token": true, "auth": true, "authorization.k8s.io/decision": true,
	"authorization.k8s.io/reason": true, "authentication.kubernetes.io/credential-id": true,
}

// sensitiveQuery are query parameters whose values are credentials.
var sensitiveQuery = regexp.MustCompile(`(?i)(passw|pwd|secret|token|key|auth|credential|signature|sig$|session|code$)`)

// RedactText scrubs secret material from s. Each pattern runs only when a
// cheap substring test says it could match: most alert text has nothing to
// redact, and Dispatch runs this on every field of every alert.
func RedactText(s string) string {
	if s == "" {
		return s
	}
	if strings.Contains(s, "PRIVATE KEY-----") {
		s = privateKey.ReplaceAllString(s, "[REDACTED PRIVATE KEY]")
	}
	if strings.Contains(s, "eyJ") {
		s = jwt.ReplaceAllString(s, "[REDACTED JWT]")
	}
	if strings.Contains(s, "@") {
		s = urlPassword.ReplaceAllString(s, "${1}"+Redacted+"@")
	}
	if strings.ContainsAny(s, " +%") && (strings.Contains(s, "earer") || strings.Contains(s, "asic") ||
		strings.Contains(s, "EARER") || strings.Contains(s, "ASIC")) {
		s = authScheme.ReplaceAllString(s, "$1 "+Redacted)
	}
	lower := strings.ToLower(s)
	if strings.ContainsAny(s, ":=") || strings.Contains(s, "%3D") {
		// Outside ASCII, case folding makes the precise tests below
		// unsafe: only the broad ones apply.
		if strings.Contains(lower, "data") && (!isASCII(s) || followedBy(lower, dataWords, dataMapSep)) {
			s = dataMap.ReplaceAllString(s, "$1$2"+Redacted)
		}
		if containsAny(lower, credentialWords) && (!isASCII(s) || followedBy(strings.ToLower(s), keyWords, keyValueSep)) {
			s = keyValue.ReplaceAllStringFunc(s, func(m string) string {
				sub := keyValue.FindStringSubmatch(m)
				v := strings.ToLower(sub[3])
				if notCredentialKeys[strings.ToLower(sub[1])] || strings.HasPrefix(sub[3], "[REDACTED") || v == "bearer" || v == "basic" {
					return m
				}
				return sub[1] + sub[2] + Redacted
			})
		}
	}
	if containsAny(s, knownKeyHints) || hasBootstrapToken(s) {
		s = knownKeys.ReplaceAllString(s, Redacted)
	}
	return s
}

// credentialWords prefilter keyValue; knownKeyHints prefilter knownKeys
// (the bootstrap token format needs a '.').
var (
	credentialWords = []string{"passw", "pwd", "secret", "token", "key", "credential", "auth"}
	knownKeyHints   = []string{"AKIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "xox", "k_live_", "k_test_", "AIza"}
)

// The regular expressions that backtrack run only where they can match: a
// key word of keyValue followed, after the rest of its key, by a separator,
// or "data" followed by ": map[" or ": {". followedBy tests lower-case
// ASCII text for that, which is most alert text; each miss is a
// regular expression that would have found nothing.
var (
	keyWords = []string{"passwd", "password", "pwd", "secret", "token", "apikey", "api_key", "api-key",
		"accesskey", "access_key", "access-key", "privatekey", "private_key", "private-key", "credential", "auth"}
	dataWords = []string{"data"}
)

// followedBy reports whether an occurrence of one of words in s, with the
// key characters after it, is followed by what sep accepts.
func followedBy(s string, words []string, sep func(rest string) bool) bool {
	for _, w := range words {
		for from := 0; ; {
			i := strings.Index(s[from:], w)
			if i < 0 {
				break
			}
			end := from + i + len(w)
			j := end
			for j < len(s) && isKeyChar(s[j]) {
				j++
			}
			if sep(s[j:]) {
				return true
			}
			from = from + i + 1
		}
	}
	return false
}

// isKeyChar is keyValue's [A-Za-z0-9_.-] (on lower-case text).
func isKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

// keyValueSep accepts what keyValue wants after a key: `"?\s*[:=]` or
// %3d.
func keyValueSep(rest string) bool {
	if strings.HasPrefix(rest, "%3d") {
		return true
	}
	rest = strings.TrimPrefix(rest, `"`)
	rest = strings.TrimLeft(rest, " \t\n\f\r")
	return rest != "" && (rest[0] == ':' || rest[0] == '=')
}

// dataMapSep accepts what dataMap wants after "data": `"?\s*:\s*` then
// "map[" or "{". Its \b needs no test here: it only narrows.
func dataMapSep(rest string) bool {
	rest = strings.TrimPrefix(rest, `"`)
	rest = strings.TrimLeft(rest, " \t\n\f\r")
	if !strings.HasPrefix(rest, ":") {
		return false
	}
	rest = strings.TrimLeft(rest[1:], " \t\n\f\r")
	return strings.HasPrefix(rest, "map[") || strings.HasPrefix(rest, "{")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// hasBootstrapToken reports whether s holds the shape of a Kubernetes
// bootstrap token (6 and 16 lower-case letters or digits around a dot),
// cheaply: most text has dots, few have that.
func hasBootstrapToken(s string) bool {
	isTok := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
	for i := 6; i+16 < len(s); i++ {
		if s[i] != '.' {
			continue
		}
		ok := true
		for j := i - 6; j < i+17 && ok; j++ {
			ok = j == i || isTok(s[j])
		}
		if ok {
			return true
		}
	}
	return false
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// sensitiveParam is sensitiveQuery.MatchString, without the regular
// expression for ASCII names.
func sensitiveParam(k string) bool {
	if !isASCII(k) {
		return sensitiveQuery.MatchString(k)
	}
	l := strings.ToLower(k)
	return containsAny(l, sensitiveParamWords) || strings.HasSuffix(l, "sig") || strings.HasSuffix(l, "code")
}

var sensitiveParamWords = []string{"passw", "pwd", "secret", "token", "key", "auth", "credential", "signature", "session"}

// RedactURI redacts the values of credential-like query parameters and
// then scrubs the rest as text. The exec command parameters stay readable.
func RedactURI(uri string) string {
	p, q, ok := strings.Cut(uri, "?")
	if !ok {
		return RedactText(uri)
	}
	vals, err := url.ParseQuery(q)
	if err != nil {
		return RedactText(p) + "?" + Redacted
	}
	changed := false
	for k, vs := range vals {
		if k == "command" || !sensitiveParam(k) {
			continue
		}
		for i := range vs {
			vs[i] = Redacted
		}
		changed = true
	}
	if changed {
		q = vals.Encode()
	}
	return RedactText(p + "?" + q)
}

// Redact returns a copy of a with secret material scrubbed from every
// free-text field. It never modifies a's slices or maps in place.
func Redact(a detect.Alert) detect.Alert {
	a.Title = RedactText(a.Title)
	a.Description = RedactText(a.Description)
	return redactEvent(a)
}

// redactEvent scrubs the fields an alert takes from its event and window.
func redactEvent(a detect.Alert) detect.Alert {
	a.Message = RedactText(a.Message)
	a.RequestURI = RedactURI(a.RequestURI)
	a.ExecCommand = RedactText(a.ExecCommand)
	a.UserAgent = RedactText(a.UserAgent)
	a.GroupKey = RedactText(a.GroupKey)
	a.Distinct = redactAll(a.Distinct)
	a.User.Extra = redactExtra(a.User.Extra)
	if a.ImpersonatedUser != nil {
		u := *a.ImpersonatedUser
		u.Extra = redactExtra(u.Extra)
		a.ImpersonatedUser = &u
	}
	return a
}

func redactAll(in []string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = RedactText(s)
	}
	return out
}

func redactExtra(in map[string][]string) map[string][]string {
	if in == nil {
		return nil
	}
	out := make(map[string][]string, len(in))
	for k, v := range in {
		out[k] = redactAll(v)
	}
	return out
}

// maxRules bounds the rule texts a redactor remembers.
const maxRules = 4096

// redactor redacts as Redact does, remembering each rule's redacted title
// and description: they are the rule's, the same in every alert. It is
// safe for concurrent use.
type redactor struct {
	mu    sync.Mutex
	rules map[string]ruleTexts
}

// ruleTexts are a rule's title and description as alerts carry them and
// redacted.
type ruleTexts struct{ title, description, redTitle, redDescription string }

func (r *redactor) redact(a detect.Alert) detect.Alert {
	r.mu.Lock()
	t, ok := r.rules[a.Rule]
	r.mu.Unlock()
	if !ok || t.title != a.Title || t.description != a.Description {
		t = ruleTexts{a.Title, a.Description, RedactText(a.Title), RedactText(a.Description)}
		r.mu.Lock()
		if r.rules == nil || len(r.rules) >= maxRules {
			r.rules = map[string]ruleTexts{}
		}
		r.rules[a.Rule] = t
		r.mu.Unlock()
	}
	a.Title, a.Description = t.redTitle, t.redDescription
	return redactEvent(a)
}
