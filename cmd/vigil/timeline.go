package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/detect/incident"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/logfile"
)

type timelineFlags struct {
	ruleFlags
	user, credential, ip, namespace string
	format, since, until            string
	quiet                           bool
}

func (a *app) timelineCmd() *cobra.Command {
	var f timelineFlags
	c := &cobra.Command{
		Use:   "timeline (--user NAME | --credential ID | --ip ADDR | --namespace NS) [FILE|DIR|-]...",
		Short: "Print every event of one actor, marking those that raised alerts",
		Long: `Timeline reads audit logs as replay does and prints, in time order, every event
of the actor chosen: a user or service account (--user, also matching requests
impersonating it), a credential (--credential, the credential-id the apiserver
records in user.extra: JTI=... for a token, X509SHA256=... for a certificate; the
part after "=" is enough), a source address (--ip) or a namespace (--namespace).
Given together, all must match. One line per request: time, verb, object,
status, source, user agent, and the rules that matched it (they run over the
whole input, so window rules count every event).`,
		Example: `  vigil timeline --user system:serviceaccount:ci:deployer /var/log/kubernetes/audit/
  vigil timeline --ip 10.0.0.7 --format json audit.log.gz`,
		RunE: func(c *cobra.Command, args []string) error { return a.timeline(c.Context(), f, args) },
	}
	f.register(c)
	fl := c.Flags()
	fl.StringVar(&f.user, "user", "", "the user or service account (system:serviceaccount:NS:NAME)")
	fl.StringVar(&f.credential, "credential", "", "the credential id (JTI=... or X509SHA256=..., or the part after =)")
	fl.StringVar(&f.ip, "ip", "", "the source address")
	fl.StringVar(&f.namespace, "namespace", "", "the namespace of the objects")
	fl.StringVar(&f.format, "format", "text", "text (one line per request) or json (JSON lines)")
	fl.StringVar(&f.since, "since", "", "skip events before this time (RFC 3339, or a duration such as 24h before now)")
	fl.StringVar(&f.until, "until", "", "skip events after this time (RFC 3339, or a duration before now)")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no note of skipped lines on standard error")
	return c
}

// timelineEvent is one request of the timeline (its last stage).
type timelineEvent struct {
	Time             time.Time         `json:"time"`
	AuditID          string            `json:"auditID"`
	Stage            string            `json:"stage"`
	User             string            `json:"user"`
	ImpersonatedUser string            `json:"impersonatedUser,omitempty"`
	CredentialID     string            `json:"credentialID,omitempty"`
	Verb             string            `json:"verb"`
	ObjectRef        *ingest.ObjectRef `json:"objectRef,omitempty"`
	RequestURI       string            `json:"requestURI"`
	ExecCommand      string            `json:"execCommand,omitempty"`
	Code             int               `json:"code,omitempty"`
	SourceIPs        []string          `json:"sourceIPs,omitempty"`
	UserAgent        string            `json:"userAgent,omitempty"`
	Alerts           []timelineMark    `json:"alerts,omitempty"`
}

// timelineMark is an alert raised by the request.
type timelineMark struct {
	Rule        string          `json:"rule"`
	Severity    detect.Severity `json:"severity"`
	Fingerprint string          `json:"fingerprint"`
}

// stageRank orders stages: a later one replaces an earlier one's fields.
var stageRank = map[string]int{"RequestReceived": 1, "ResponseStarted": 2, "ResponseComplete": 3, "Panic": 4}

func (f timelineFlags) match(ev *ingest.Event) bool {
	if f.user != "" && ev.User.Username != f.user && ev.ImpersonatedUser.Username != f.user {
		return false
	}
	if f.credential != "" && !slices.ContainsFunc(ev.User.Extra[incident.CredentialIDKey], func(c string) bool {
		return c == f.credential || strings.HasSuffix(c, "="+f.credential)
	}) {
		return false
	}
	if f.ip != "" && !slices.Contains(ev.SourceIPs, f.ip) {
		return false
	}
	ref := ev.ObjectRef
	return f.namespace == "" || ref.Namespace == f.namespace || (ref.Resource == "namespaces" && ref.Name == f.namespace)
}

func (a *app) timeline(ctx context.Context, f timelineFlags, args []string) error {
	if f.user == "" && f.credential == "" && f.ip == "" && f.namespace == "" {
		return usagef("say whose timeline: --user, --credential, --ip or --namespace")
	}
	if f.format != "text" && f.format != "json" {
		return usagef("--format %q: want text or json", f.format)
	}
	since, until, err := timeRange(f.since, f.until)
	if err != nil {
		return err
	}
	if args, err = a.inputs(args); err != nil {
		return err
	}
	cfg, cat, err := f.catalog()
	if err != nil {
		return err
	}
	// Every request a rule matches is marked: repeats are not collapsed
	// into one alert here.
	off := detect.Duration(0)
	for i := range cat.Rules {
		if cat.Rules[i].Window == nil {
			cat.Rules[i].Suppress = &detect.SuppressSpec{For: &off}
		}
	}
	rs, err := detect.Compile(cat)
	if err != nil {
		return usageError{err}
	}
	bad := 0
	reader, err := logfile.Open(args, a.stdin, logfile.Options{OnError: func(string, error) error { bad++; return nil }})
	if err != nil {
		return usageError{err}
	}
	defer reader.Close(ctx)
	events, err := collectTimeline(ctx, reader, f, rs, detect.Options{
		Lateness: cfg.lateness(), MaxKeysPerRule: cfg.Detect.MaxKeysPerRule, Since: since, Until: until,
		OnReject: func(ingest.Record, error) { bad++ },
	})
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(a.stdout, 64<<10)
	if f.format == "json" {
		enc := json.NewEncoder(w)
		for i := range events {
			if err := enc.Encode(&events[i]); err != nil {
				return err
			}
		}
	} else {
		writeTimeline(w, f, events)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write timeline: %w", err)
	}
	if bad > 0 && !f.quiet {
		fmt.Fprintf(a.stderr, "vigil timeline: %d lines that are not audit events skipped (vigil replay lists them)\n", bad)
	}
	return nil
}

// collectTimeline reads every batch, keeps the requests f matches (one
// entry per auditID, with the fields of its last stage) and runs the rules
// over everything to mark the requests that raised alerts.
func collectTimeline(ctx context.Context, src ingest.Source, f timelineFlags, rs *detect.RuleSet, o detect.Options) ([]timelineEvent, error) {
	var events []timelineEvent
	byID := map[string]int{}
	o.Rules = rs
	o.Emit = func(al detect.Alert) error {
		for _, id := range al.AuditIDs {
			if i, ok := byID[id]; ok && !slices.ContainsFunc(events[i].Alerts, func(m timelineMark) bool { return m.Rule == al.Rule }) {
				events[i].Alerts = append(events[i].Alerts, timelineMark{al.Rule, al.Severity, al.Fingerprint})
			}
		}
		return nil
	}
	eng, err := detect.New(o)
	if err != nil {
		return nil, err
	}
	dec := ingest.Decoder{Extra: true}
	for {
		b, rerr := src.Read(ctx)
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return nil, fmt.Errorf("read input: %w", rerr)
		}
		// The records belong to the reader once the engine acks the batch:
		// look at them first.
		for _, r := range b.Records {
			ev, err := dec.Decode(r.Data)
			if err != nil || !f.match(ev) || (!o.Since.IsZero() && ev.Time().Before(o.Since)) || (!o.Until.IsZero() && ev.Time().After(o.Until)) {
				continue
			}
			i, seen := byID[ev.AuditID]
			if !seen {
				i = len(events)
				byID[strings.Clone(ev.AuditID)] = i
				events = append(events, timelineEvent{})
			} else if stageRank[ev.Stage] < stageRank[events[i].Stage] {
				continue
			}
			events[i] = newTimelineEvent(ev.Clone(), events[i].Alerts)
		}
		if err := eng.Process(ctx, b); err != nil {
			return nil, err
		}
		if rerr != nil {
			break
		}
	}
	if err := eng.Flush(ctx); err != nil {
		return nil, err
	}
	for i := range events {
		slices.SortFunc(events[i].Alerts, func(a, b timelineMark) int {
			return cmp.Or(cmp.Compare(b.Severity, a.Severity), strings.Compare(a.Rule, b.Rule))
		})
	}
	slices.SortStableFunc(events, func(a, b timelineEvent) int {
		return cmp.Or(a.Time.Compare(b.Time), strings.Compare(a.AuditID, b.AuditID))
	})
	return events, nil
}

func newTimelineEvent(ev *ingest.Event, marks []timelineMark) timelineEvent {
	te := timelineEvent{Time: ev.Time(), AuditID: ev.AuditID, Stage: ev.Stage, User: ev.User.Username,
		ImpersonatedUser: ev.ImpersonatedUser.Username, Verb: ev.Verb, RequestURI: ev.RequestURI,
		ExecCommand: detect.ExecCommand(ev.RequestURI), Code: ev.ResponseStatus.Code, SourceIPs: ev.SourceIPs,
		UserAgent: ev.UserAgent, Alerts: marks}
	if ids := ev.User.Extra[incident.CredentialIDKey]; len(ids) > 0 {
		te.CredentialID = ids[0]
	}
	if ev.ObjectRef != (ingest.ObjectRef{}) {
		ref := ev.ObjectRef
		te.ObjectRef = &ref
	}
	return te
}

// writeTimeline prints a header and one aligned line per request.
func writeTimeline(w io.Writer, f timelineFlags, events []timelineEvent) {
	var who []string
	for _, kv := range [][2]string{{"user", f.user}, {"credential", f.credential}, {"ip", f.ip}, {"namespace", f.namespace}} {
		if kv[1] != "" {
			who = append(who, kv[0]+" "+kv[1])
		}
	}
	if len(events) == 0 {
		fmt.Fprintf(w, "# %s: no events\n", strings.Join(who, ", "))
		return
	}
	first, last := events[0].Time.UTC(), events[len(events)-1].Time.UTC()
	layout := "2006-01-02T15:04:05.000Z"
	if first.Format(time.DateOnly) == last.Format(time.DateOnly) {
		layout = "15:04:05.000"
	}
	marked, rules, users := 0, map[string]bool{}, map[string]int{}
	ips, agents, creds := map[string]int{}, map[string]int{}, map[string]int{}
	for _, e := range events {
		if len(e.Alerts) > 0 {
			marked++
		}
		for _, m := range e.Alerts {
			rules[m.Rule] = true
		}
		users[cmp.Or(e.User, "(unauthenticated)")]++
		for _, ip := range e.SourceIPs {
			ips[ip]++
		}
		agents[shortAgent(e.UserAgent)]++
		if e.CredentialID != "" {
			creds[e.CredentialID]++
		}
	}
	fmt.Fprintf(w, "# %s: %d %s from %s to %s (UTC), %d of them alerting (%d %s)\n", strings.Join(who, ", "),
		len(events), plural(len(events), "request", "requests"), first.Format(time.RFC3339), last.Format(time.RFC3339),
		marked, len(rules), plural(len(rules), "rule", "rules"))
	showUser := f.user == "" && f.credential == ""
	if f.user == "" {
		fmt.Fprintf(w, "# users: %s\n", countList(users, 8))
	}
	if len(creds) > 0 {
		fmt.Fprintf(w, "# credentials: %s\n", countList(creds, 8))
	}
	fmt.Fprintf(w, "# sources: %s\n# agents: %s\n", countList(ips, 8), countList(agents, 8))
	userWidth := 0
	if showUser {
		for u := range users {
			userWidth = min(max(userWidth, len(u)), 40)
		}
	}
	for _, e := range events {
		var sb strings.Builder
		sb.WriteString(e.Time.UTC().Format(layout))
		if showUser {
			fmt.Fprintf(&sb, "  %-*s", userWidth, cmp.Or(e.User, "(unauthenticated)"))
		}
		fmt.Fprintf(&sb, "  %-7s %-44s %3s  %-15s %s", e.Verb, timelineObject(e), codeText(e.Code), firstOr(e.SourceIPs, "-"), shortAgent(e.UserAgent))
		if len(e.Alerts) > 0 {
			names := make([]string, len(e.Alerts))
			for i, m := range e.Alerts {
				names[i] = m.Rule
			}
			fmt.Fprintf(&sb, "  ! %s: %s", e.Alerts[0].Severity, strings.Join(names, ", "))
		}
		fmt.Fprintln(w, strings.TrimRight(sb.String(), " "))
	}
}

// timelineObject names what a request touched: pods/exec team-a/web "id",
// or the path of a non-resource request, and whom it impersonated.
func timelineObject(e timelineEvent) string {
	var s string
	if ref := e.ObjectRef; ref != nil && ref.Resource != "" {
		s = incident.Object{Resource: ref.Resource, Subresource: ref.Subresource, Namespace: ref.Namespace, Name: ref.Name}.String()
	} else {
		s, _, _ = strings.Cut(e.RequestURI, "?")
	}
	if e.ExecCommand != "" {
		s += fmt.Sprintf(" %q", e.ExecCommand)
	}
	if e.ImpersonatedUser != "" {
		if e.ImpersonatedUser == e.User {
			return s
		}
		s += " [as " + e.ImpersonatedUser + " by " + cmp.Or(e.User, "?") + "]"
	}
	return s
}

func codeText(code int) string {
	if code == 0 {
		return "-"
	}
	return fmt.Sprint(code)
}

func firstOr(s []string, def string) string {
	if len(s) == 0 {
		return def
	}
	return s[0]
}

// shortAgent keeps the product of a user agent: kubectl/v1.33.1.
func shortAgent(ua string) string {
	if ua == "" {
		return "-"
	}
	s, _, _ := strings.Cut(ua, " ")
	return s
}

// countList writes the most frequent values with their counts.
func countList(m map[string]int, n int) string {
	kvs := sortedCounts(m)
	var parts []string
	for i, kv := range kvs {
		if i == n {
			parts = append(parts, fmt.Sprintf("and %d more", len(kvs)-n))
			break
		}
		parts = append(parts, fmt.Sprintf("%s (%d)", kv.k, kv.n))
	}
	return strings.Join(parts, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
