package sinks

import (
	"net/url"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/internal/auditgen"
	"github.com/vigil-k8s/vigil/policies"
)

// redactTextBroad and redactURIBroad are RedactText and RedactURI with
// only the broad tests before each regular expression, as they were before
// the precise ones: every text must redact the same either way.
func redactTextBroad(s string) string {
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
		if strings.Contains(lower, "data") {
			s = dataMap.ReplaceAllString(s, "$1$2"+Redacted)
		}
		if containsAny(lower, credentialWords) {
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
	if containsAny(s, []string{"AKIA", "gh", "xox", "k_live_", "k_test_", "AIza"}) || hasBootstrapToken(s) {
		s = knownKeys.ReplaceAllString(s, Redacted)
	}
	return s
}

func redactURIBroad(uri string) string {
	p, q, ok := strings.Cut(uri, "?")
	if !ok {
		return redactTextBroad(uri)
	}
	vals, err := url.ParseQuery(q)
	if err != nil {
		return redactTextBroad(p) + "?" + Redacted
	}
	changed := false
	for k, vs := range vals {
		if k == "command" || !sensitiveQuery.MatchString(k) {
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
	return redactTextBroad(p + "?" + q)
}

// redactionTexts are texts with and without secrets, in the shapes alerts
// carry them.
var redactionTexts = []string{
	"read secrets: db-credentials, api-key", "map[data:map[password:aHVudGVy] kind:Secret]",
	`{"stringData":{"a":"b"}}`, "env MYSQL_PWD=hunter2 mysql", "Authorization: Bearer abcdef123456",
	"postgres://app:pw@db/x", "key AKIAABCDEFGHIJKLMNOP", "join 07401b.f395accd246ae52d",
	"-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", "token = abc", `"api_key" : "x1"`,
	"secretName: db", "auth%3Dxyz", "client-secret:  q", "x-access-key=AKIA", "data : {a}", "binaryData: map[k:v]",
	"ſecret=ſhh", "ſecret data: map[a:b] secret", "SECRET=1", "TOKEN%3dabc", "the.private-key.pem=abc",
	"ghp_012345678901234567890123456789abcd", "high ghost", "xoxb-1234567890-abc", "sk_live_0123456789ab",
	"/api/v1/namespaces/a/pods/p/exec?command=cat&command=%2Fetc%2Fpasswd&container=c&token=abc",
	"/apis/x?Signature=abc&X-Amz-Credential=k&session_id=1&authcode=9&sig=q&ünïcödé_key=1",
	"/api?%zz", "kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0",
}

func TestRedaction_PreciseTestsChangeNothing(t *testing.T) {
	texts := append([]string(nil), redactionTexts...)
	cat, err := policies.LoadBuiltin()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := detect.Compile(cat)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs.Rules {
		texts = append(texts, r.Spec.Title, r.Spec.Description)
	}
	for _, p := range auditgen.Profiles {
		alerts, err := detect.Evaluate(rs, auditgen.Events(auditgen.Options{Seed: 5, Profile: p}, 5000))
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range alerts {
			texts = append(texts, a.Message, a.RequestURI, a.ExecCommand, a.UserAgent, a.GroupKey)
		}
	}
	for _, s := range texts {
		if got, want := RedactText(s), redactTextBroad(s); got != want {
			t.Errorf("RedactText(%q) = %q, before %q", s, got, want)
		}
		if got, want := RedactURI(s), redactURIBroad(s); got != want {
			t.Errorf("RedactURI(%q) = %q, before %q", s, got, want)
		}
	}
	var r redactor
	for _, a := range []detect.Alert{{Rule: "r", Title: "token=1", Description: "x"}, {Rule: "r", Title: "t", Description: "key: 2"}} {
		if got, want := r.redact(a), Redact(a); got.Title != want.Title || got.Description != want.Description {
			t.Errorf("redactor gave %q %q, Redact %q %q", got.Title, got.Description, want.Title, want.Description)
		}
	}
}

// FuzzRedactText holds RedactText and RedactURI to the broad tests.
//
//	go test ./sinks -run '^$' -fuzz FuzzRedactText -fuzztime 60s
func FuzzRedactText(f *testing.F) {
	for _, s := range redactionTexts {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := RedactText(s), redactTextBroad(s); got != want {
			t.Fatalf("RedactText(%q) = %q, before %q", s, got, want)
		}
		if got, want := RedactURI(s), redactURIBroad(s); got != want {
			t.Fatalf("RedactURI(%q) = %q, before %q", s, got, want)
		}
	})
}
