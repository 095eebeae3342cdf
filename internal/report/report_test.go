package report

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/detect/incident"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/policies/auditpolicy"
)

var t0 = time.Date(2026, 11, 22, 6, 28, 0, 0, time.UTC)

// sample builds incidents from alerts that carry URLs and markup in every
// free-text field, as hostile input would.
func sample(t *testing.T) Data {
	t.Helper()
	tr := incident.NewTracker(incident.Options{})
	hostile := `<script>alert(1)</script><img src="https://evil.example.com/x.png">`
	for i, sev := range []detect.Severity{detect.SeverityLow, detect.SeverityHigh, detect.SeverityCritical} {
		at := t0.Add(time.Duration(i) * time.Minute)
		al := detect.Alert{Rule: "rule-" + sev.String(), Title: "Title " + hostile, Severity: sev,
			Tags: []string{"attack.credential-access", "T1552.007"}, Message: "read https://evil.example.com/token " + hostile,
			Time: at, User: ingest.UserInfo{Username: "system:serviceaccount:ci:deployer"}, SourceIPs: []string{"10.0.0.7"},
			UserAgent: "python-requests/2.31.0 " + hostile, Verb: "get",
			ObjectRef: &ingest.ObjectRef{Resource: "secrets", Namespace: "kube-system", Name: "https://evil.example.com/"},
			AuditIDs:  []string{"a" + sev.String()}, Count: 1, FirstTime: at, LastTime: at}
		al.Fingerprint = detect.Fingerprint(al.Rule, al.AuditIDs[0], at)
		tr.Observe(al)
	}
	return Data{Generated: t0, Version: "test", Files: []File{{Name: "audit.log", Events: 3}}, Events: 3,
		From: t0, To: t0.Add(2 * time.Minute), ActivityStep: time.Second,
		Activity: []incident.Point[string]{{Time: t0, N: 2}, {Time: t0.Add(2 * time.Minute), N: 1}},
		Rules:    3, Alerts: 3, Incidents: tr.Incidents()}
}

func render(t *testing.T, d Data) string {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, d); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// resourceAttrs are the attributes through which a page loads something.
var resourceAttrs = map[string]bool{"src": true, "href": true, "srcset": true, "action": true, "formaction": true,
	"poster": true, "data": true, "xlink:href": true, "background": true, "manifest": true, "ping": true}

var cssURL = regexp.MustCompile(`(?i)url\s*\(|@import`)

// TestWrite_NoExternalResource parses the page and checks that nothing in
// it can load a resource: no script, no http(s) or protocol-relative
// reference in any loading attribute, no url() or @import in CSS.
func TestWrite_NoExternalResource(t *testing.T) {
	page := render(t, sample(t))
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "script", "iframe", "object", "embed", "link", "img", "base":
				t.Errorf("element <%s> in the report", n.Data)
			case "style":
				if n.FirstChild != nil && cssURL.MatchString(n.FirstChild.Data) {
					t.Errorf("style loads a resource: %s", cssURL.FindString(n.FirstChild.Data))
				}
			}
			for _, a := range n.Attr {
				key := strings.ToLower(a.Key)
				if a.Namespace != "" {
					key = a.Namespace + ":" + key
				}
				v := strings.ToLower(strings.TrimSpace(a.Val))
				if resourceAttrs[key] && !strings.HasPrefix(v, "#") {
					t.Errorf("<%s %s=%q>: only in-page references are allowed", n.Data, key, a.Val)
				}
				if key == "style" && cssURL.MatchString(v) {
					t.Errorf("<%s style=%q> loads a resource", n.Data, a.Val)
				}
				if strings.HasPrefix(key, "on") {
					t.Errorf("<%s %s>: event handler in the report", n.Data, key)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	// The hostile URLs are there, as text only.
	if !strings.Contains(page, "https://evil.example.com/token") {
		t.Error("the alert message is missing")
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, `<img src="https://`) {
		t.Error("markup from alerts was not escaped")
	}
}

func TestWrite_Content(t *testing.T) {
	d := sample(t)
	tests := []struct {
		name     string
		edit     func(*Data)
		want     []string
		dontWant []string
	}{
		{name: "incidents, chain, charts and input",
			want: []string{`id="incident-1"`, "system:serviceaccount:ci:deployer", `<svg class="chart"`, `class="sev-critical"`,
				`<li class="reached">credential access`, "<code>audit.log</code> (3 events)", "2026-11-22 06:28:00.000Z",
				"No audit policy was given", "vigil timeline --user NAME audit.log"}},
		{name: "coverage of a policy",
			edit: func(d *Data) {
				d.Policy = "policy.yaml"
				d.Coverage = &auditpolicy.Report{Verdicts: []auditpolicy.Verdict{
					{Rule: "pod-exec", Severity: detect.SeverityMedium, Status: auditpolicy.Blind, Reasons: []string{"pods/exec recorded at None by rules[2]"}},
					{Rule: "secret-read", Severity: detect.SeverityLow, Status: auditpolicy.Covered},
				}}
			},
			want:     []string{"Checked against <code>policy.yaml</code>: 2 detections, 1 blind, 0 degraded, 0 unverified, 1 covered", `<span class="status blind">blind</span>`, "pods/exec recorded at None by rules[2]"},
			dontWant: []string{"No audit policy was given", `<code>secret-read</code></td>`}},
		{name: "no alerts",
			edit: func(d *Data) { d.Incidents, d.Alerts = nil, 0 },
			want: []string{"No alert was raised"}, dontWant: []string{`id="incident-1"`, `<svg`}},
		{name: "long timelines are cut",
			edit: func(d *Data) { d.TimelineRows = 2 },
			want: []string{"3 alerts listed; the first 2 are shown here"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := d
			if tt.edit != nil {
				tt.edit(&d)
			}
			page := render(t, d)
			for _, w := range tt.want {
				if !strings.Contains(page, w) {
					t.Errorf("report lacks %q", w)
				}
			}
			for _, w := range tt.dontWant {
				if strings.Contains(page, w) {
					t.Errorf("report holds %q", w)
				}
			}
		})
	}
}

func TestIncidentChart_StacksBySeverity(t *testing.T) {
	inc := sample(t).Incidents[0]
	c := incidentChart(inc)
	if len(c.Bars) != 3 || c.Max != "1" {
		t.Fatalf("bars %+v max %s", c.Bars, c.Max)
	}
	for _, b := range c.Bars {
		if b.H <= 0 || b.Y < padT || b.Y+b.H > padT+plotH()+1e-9 || b.X < padL || b.X+b.W > chartW-padR {
			t.Errorf("bar outside the plot: %+v", b)
		}
	}
	if c.Bars[0].X >= c.Bars[2].X {
		t.Errorf("bars not in time order: %+v", c.Bars)
	}
	if len(c.Legend) != 3 || c.Legend[0].Text != "critical" {
		t.Errorf("legend %+v", c.Legend)
	}
}
