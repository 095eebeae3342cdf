// Package slack posts alerts to a Slack incoming webhook as readable
// messages: severity, who, what, where, when, the exec command or the
// secret names, and the audit IDs behind the alert.
package slack

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/sinks/internal/sinkutil"
)

// DefaultTimeout bounds one request.
const DefaultTimeout = 10 * time.Second

// maxAuditIDs bounds the audit IDs listed per alert; the rest are counted.
const maxAuditIDs = 5

// Config configures a Slack sink.
type Config struct {
	// Name is the sink's name from the config (set by the builder).
	Name string `yaml:"-"`
	// URL is the incoming webhook URL. It is a credential: read it with
	// ${file:PATH} or ${env:NAME}. It never appears in logs or errors.
	URL string `yaml:"url"`
	// Channel and Username override the webhook's defaults (legacy
	// webhooks only).
	Channel  string          `yaml:"channel"`
	Username string          `yaml:"username"`
	Timeout  detect.Duration `yaml:"timeout"`
}

// Validate checks the config; field paths are relative to the sink.
func (c Config) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, &sinkutil.FieldError{Field: "url", Err: sinkutil.ErrRequired})
	} else if err := sinkutil.CheckURL("url", c.URL); err != nil {
		// Say what is wrong without echoing the secret URL.
		errs = append(errs, sinkutil.Fieldf("url", "not an http(s) webhook URL"))
	}
	if c.Timeout < 0 {
		errs = append(errs, sinkutil.Fieldf("timeout", "must not be negative"))
	}
	return errors.Join(errs...)
}

// Sink posts alerts to Slack. It is safe for concurrent use.
type Sink struct {
	cfg    Config
	client *http.Client
}

// New builds the sink.
func New(cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	timeout := cmp.Or(cfg.Timeout.D(), DefaultTimeout)
	c, err := sinkutil.HTTPClient(timeout, sinkutil.TLS{})
	if err != nil {
		return nil, err
	}
	return &Sink{cfg: cfg, client: c}, nil
}

// MaxBatch is the most alerts per message: Slack allows 50 blocks and each
// alert takes two.
func (s *Sink) MaxBatch() int { return 20 }

// Message is the incoming webhook body.
type Message struct {
	Text     string  `json:"text"`
	Channel  string  `json:"channel,omitempty"`
	Username string  `json:"username,omitempty"`
	Blocks   []Block `json:"blocks"`
}

// Block is a Slack layout block (section or divider).
type Block struct {
	Type string `json:"type"`
	Text *Text  `json:"text,omitempty"`
}

// Text is a Slack text object.
type Text struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

var severityIcon = map[detect.Severity]string{
	detect.SeverityCritical: ":rotating_light:",
	detect.SeverityHigh:     ":red_circle:",
	detect.SeverityMedium:   ":large_orange_diamond:",
	detect.SeverityLow:      ":large_blue_circle:",
	detect.SeverityInfo:     ":information_source:",
}

// Build returns the message for alerts.
func (s *Sink) Build(alerts []detect.Alert) Message {
	m := Message{Channel: s.cfg.Channel, Username: s.cfg.Username}
	var titles []string
	for i := range alerts {
		a := &alerts[i]
		titles = append(titles, fmt.Sprintf("[%s] %s", strings.ToUpper(a.Severity.String()), a.Title))
		if i > 0 {
			m.Blocks = append(m.Blocks, Block{Type: "divider"})
		}
		m.Blocks = append(m.Blocks, Block{Type: "section", Text: &Text{Type: "mrkdwn", Text: render(a)}})
	}
	m.Text = strings.Join(titles, "; ")
	return m
}

// render writes one alert as Slack mrkdwn.
func render(a *detect.Alert) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s *%s* `%s` (%s)\n", severityIcon[a.Severity], esc(a.Title),
		esc(a.Rule), strings.ToUpper(a.Severity.String()))
	if a.Message != "" {
		fmt.Fprintf(&b, "%s\n", esc(a.Message))
	}
	who := esc(a.User.Username)
	if who == "" {
		who = "(unauthenticated)"
	}
	if a.ImpersonatedUser != nil && a.ImpersonatedUser.Username != "" {
		who += " as " + esc(a.ImpersonatedUser.Username)
	}
	if len(a.SourceIPs) > 0 {
		who += " from " + esc(strings.Join(a.SourceIPs, ", "))
	}
	if a.UserAgent != "" {
		who += " (" + esc(a.UserAgent) + ")"
	}
	fmt.Fprintf(&b, "*Who:* %s\n", who)
	what := esc(a.Verb)
	where := ""
	if r := a.ObjectRef; r != nil {
		res := r.Resource
		if r.Subresource != "" {
			res += "/" + r.Subresource
		}
		what += " " + esc(res)
		if r.Name != "" {
			what += " " + esc(r.Name)
		}
		if r.Namespace != "" {
			where = "namespace " + esc(r.Namespace)
		}
	} else if a.RequestURI != "" {
		what += " " + esc(a.RequestURI)
	}
	if a.ResponseCode != 0 {
		what += fmt.Sprintf(" → %d", a.ResponseCode)
	}
	fmt.Fprintf(&b, "*What:* %s\n", strings.TrimSpace(what))
	if a.Cluster != "" {
		where = strings.TrimSpace("cluster " + esc(a.Cluster) + ", " + where)
		where = strings.TrimSuffix(where, ",")
	}
	if where == "" {
		where = "cluster-wide"
	}
	fmt.Fprintf(&b, "*Where:* %s\n", where)
	when := a.Time.UTC().Format(time.RFC3339)
	if a.Count > 1 {
		when = fmt.Sprintf("%s to %s, %d events", a.FirstTime.UTC().Format(time.RFC3339),
			a.LastTime.UTC().Format(time.RFC3339), a.Count)
	}
	fmt.Fprintf(&b, "*When:* %s\n", when)
	if a.ExecCommand != "" {
		fmt.Fprintf(&b, "*Command:* `%s`\n", strings.ReplaceAll(esc(a.ExecCommand), "`", "'"))
	}
	if names := secretNames(a); len(names) > 0 {
		fmt.Fprintf(&b, "*Secrets:* %s\n", esc(strings.Join(names, ", ")))
	} else if len(a.Distinct) > 0 {
		fmt.Fprintf(&b, "*Distinct:* %s\n", esc(strings.Join(a.Distinct, ", ")))
	}
	ids := a.AuditIDs
	more := ""
	if len(ids) > maxAuditIDs {
		more = fmt.Sprintf(" (+%d more)", len(ids)-maxAuditIDs)
		ids = ids[:maxAuditIDs]
	}
	if len(ids) > 0 {
		fmt.Fprintf(&b, "*Audit IDs:* %s%s", esc(strings.Join(ids, ", ")), more)
	}
	return strings.TrimRight(b.String(), "\n")
}

// secretNames are the names of the secrets an alert is about: the distinct
// values of an enumeration window over secrets, or the one secret touched.
func secretNames(a *detect.Alert) []string {
	if a.ObjectRef == nil || a.ObjectRef.Resource != "secrets" {
		return nil
	}
	if len(a.Distinct) > 0 {
		return a.Distinct
	}
	if a.ObjectRef.Name != "" {
		return []string{a.ObjectRef.Name}
	}
	return nil
}

// esc escapes the three characters Slack's mrkdwn treats as control.
func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// Send posts one message for the alerts.
func (s *Sink) Send(ctx context.Context, alerts ...detect.Alert) (bool, error) {
	body, err := json.Marshal(s.Build(alerts))
	if err != nil {
		return false, fmt.Errorf("encode slack message: %w", err)
	}
	return sinkutil.Post(ctx, s.client, s.cfg.URL, body, nil)
}

func (s *Sink) String() string { return "slack[" + s.cfg.Name + "]" }
