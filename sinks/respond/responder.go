package respond

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/vigil-k8s/vigil/detect"
)

// RepeatWindow is how long an action on one target covers the alerts
// that follow about the same target: they make no new action.
const RepeatWindow = 10 * time.Minute

// statusRepeat marks an action already taken on the same target: no
// record is written.
const statusRepeat = "repeat"

// Emitter stores the sink events of records; the sinks' Dispatcher is one.
type Emitter interface {
	Dispatch(ctx context.Context, alerts ...detect.Alert) error
}

// Options configure a Responder.
type Options struct {
	// Cluster is where actions run; without it, actions that need it are
	// planned from the alert alone (replay), and only webhooks run.
	Cluster *Cluster
	// Journal receives every record (required); Close closes it.
	Journal *Journal
	// DryRun plans every action, whatever the config enforces.
	DryRun bool
	// Clock gives the time of an alert's actions, for records and rate
	// limits: the wall clock by default; replay uses the alert's time.
	Clock   func(al *detect.Alert) time.Time
	Logger  *slog.Logger
	Metrics *metrics.Set
}

// Responder runs the responses of alerts. It is a sinks.Sink: Send handles
// alerts in order and reports a failure worth retrying (the cluster or the
// sinks are unreachable) so that delivery hands the alerts back later.
type Responder struct {
	cfg    Config
	o      Options
	guard  *Guard
	limits *limits
	// mu serialises alerts: the limits and the journal's view of what
	// was started are shared.
	mu sync.Mutex
	// ready is closed by Start; events is set before.
	ready  chan struct{}
	events Emitter
	// recent is when each action last took each target (RepeatWindow).
	recent map[string]time.Time
}

// New builds a Responder; Start must be called before it handles alerts.
func New(cfg Config, o Options) (*Responder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.Journal == nil {
		return nil, errors.New("responder: a journal is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	if o.Clock == nil {
		o.Clock = func(*detect.Alert) time.Time { return time.Now().UTC() }
	}
	return &Responder{cfg: cfg, o: o, guard: NewGuard(cfg.Protect), limits: newLimits(cfg), ready: make(chan struct{}),
		recent: map[string]time.Time{}}, nil
}

// Start lets Handle run, with records' events going to e (nil: none). The
// responder is handed to the sinks before the Dispatcher that will carry
// its events exists; Handle waits for Start so no event is missed.
func (r *Responder) Start(e Emitter) {
	r.events = e
	close(r.ready)
}

// String names the responder in the sinks' logs.
func (r *Responder) String() string { return "respond" }

// MaxBatch keeps batches small: each alert may mean several API calls.
func (r *Responder) MaxBatch() int { return 10 }

// Close closes the journal.
func (r *Responder) Close() error { return r.o.Journal.Close() }

// Send handles the alerts in order. A failure of the moment returns retry
// true: the alerts come back, and what was already recorded is skipped.
func (r *Responder) Send(ctx context.Context, alerts ...detect.Alert) (bool, error) {
	for i := range alerts {
		if _, err := r.Handle(ctx, alerts[i]); err != nil {
			return true, err
		}
	}
	return false, nil
}

// Handle runs the actions of every responses rule the alert matches and
// returns their records; it waits for Start. Actions already recorded for
// this alert (it was delivered before) are skipped; a started one resumes.
func (r *Responder) Handle(ctx context.Context, al detect.Alert) ([]Record, error) {
	if strings.HasPrefix(al.Rule, EventRulePrefix) {
		return nil, nil
	}
	select {
	case <-r.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Record
	for _, rule := range r.cfg.Rules {
		if !rule.Match.matches(&al) {
			continue
		}
		for i, a := range rule.Actions {
			rec, err := r.act(ctx, &al, rule.Name, i, a)
			if err != nil {
				return out, err
			}
			if rec != nil {
				out = append(out, *rec)
			}
		}
	}
	return out, nil
}

// act runs one action; nil without error means it was recorded before.
func (r *Responder) act(ctx context.Context, al *detect.Alert, rule string, i int, a Action) (*Record, error) {
	id := actionID(al.Fingerprint, rule, i)
	prev, seen := r.o.Journal.Lookup(id)
	if seen && final(prev.Status) {
		return nil, nil
	}
	typ, _ := lookupAction(a.Type)
	p := a.params()
	rec := &Record{ID: id, Time: r.o.Clock(al), Action: a.Type, Mode: ModeDryRun, Reason: reason(al),
		Response: ResponseRef{Rule: rule, Action: i},
		Alert: AlertRef{Rule: al.Rule, Fingerprint: al.Fingerprint, Severity: al.Severity, Time: al.Time,
			User: al.User.Username}}
	if a.Enforce && !r.o.DryRun {
		rec.Mode = ModeEnforce
	}
	resumed := seen && prev.Status == StatusStarted
	if resumed {
		rec.Target, rec.Before = prev.Target, prev.Before
	} else if status, detail := r.admit(al, rule, i, typ, p, rec); status == statusRepeat {
		return nil, nil
	} else if status != "" {
		rec.Status, rec.Detail = status, detail
		return rec, r.finish(ctx, rec, al)
	}
	if r.o.Cluster == nil && !typ.offline {
		rec.Mode, rec.Status, rec.Detail = ModeDryRun, StatusPlanned, "planned from the alert alone (no cluster to read)"
		return rec, r.taken(ctx, rec, al, typ)
	}
	x := &execution{c: r.o.Cluster, g: r.guard, p: p, al: al, rec: rec, enforce: rec.Mode == ModeEnforce,
		resumed: resumed, begin: func(ctx context.Context) error {
			if resumed {
				return nil
			}
			started := *rec
			started.Status = StatusStarted
			return r.o.Journal.Append(started)
		}}
	detail, changed, err := typ.run(ctx, x)
	var ref *refusal
	var nt *noTarget
	switch {
	case err == nil && rec.Mode == ModeDryRun:
		rec.Status, rec.Detail = StatusPlanned, detail
		if !changed {
			rec.Detail += " (nothing to change now)"
		}
	case err == nil && changed:
		rec.Status, rec.Detail = StatusDone, detail
	case err == nil:
		rec.Status, rec.Detail = StatusUnchanged, detail
	case errors.As(err, &ref):
		rec.Status, rec.Detail = StatusRefused, ref.msg
	case errors.As(err, &nt):
		rec.Status, rec.Detail = StatusSkipped, nt.msg
	case apierrors.IsNotFound(err):
		rec.Status, rec.Detail = StatusSkipped, "not found: "+err.Error()
	case transient(err):
		r.o.Logger.Warn("response action will be retried", "id", id, "action", a.Type, "target", rec.Target.String(), "err", err)
		return nil, fmt.Errorf("%s %s: %w", a.Type, rec.Target, err)
	default:
		rec.Status, rec.Detail = StatusFailed, err.Error()
	}
	return rec, r.taken(ctx, rec, al, typ)
}

// taken records an admitted action that ran to an end, and only then
// counts it against the rate limits and as the latest action on its
// target: an attempt that will be retried counts for nothing.
func (r *Responder) taken(ctx context.Context, rec *Record, al *detect.Alert, typ actionType) error {
	if err := r.finish(ctx, rec, al); err != nil {
		return err
	}
	r.limits.add(rec.Response.Rule, rec.Response.Action, rec.Time)
	if !typ.offline {
		r.recent[repeatKey(rec)] = rec.Time
	}
	return nil
}

// repeatKey identifies an action of a rule on a target.
func repeatKey(rec *Record) string {
	return limitKey(rec.Response.Rule, rec.Response.Action) + " " + rec.Target.String()
}

// admit checks what needs no cluster: a target, the guard, the rate
// limits. It returns a final status when the action stops here.
func (r *Responder) admit(al *detect.Alert, rule string, i int, typ actionType, p Params, rec *Record) (string, string) {
	t, err := typ.target(al, p)
	var nt *noTarget
	if errors.As(err, &nt) {
		return StatusSkipped, nt.msg
	}
	rec.Target = t
	if err := r.guard.Actor(al); err != nil {
		return StatusRefused, err.Error()
	}
	if err := r.guard.Target(t); err != nil {
		return StatusRefused, err.Error()
	}
	// Several alerts about one object (a privileged pod raises three
	// rules) make one action on it.
	if !typ.offline {
		for k, at := range r.recent {
			if rec.Time.Sub(at).Abs() >= RepeatWindow {
				delete(r.recent, k)
			}
		}
		if _, ok := r.recent[repeatKey(rec)]; ok {
			return statusRepeat, ""
		}
	}
	if why := r.limits.check(rule, i, rec.Time); why != "" {
		return StatusRateLimited, "reached " + why
	}
	return "", ""
}

// finish sends the record's event, then journals it: a crash in between
// sends the event again (it has a stable fingerprint), never loses it.
func (r *Responder) finish(ctx context.Context, rec *Record, al *detect.Alert) error {
	if r.events != nil {
		if err := r.events.Dispatch(ctx, EventAlert(*rec, al)); err != nil {
			return fmt.Errorf("store event of action %s: %w", rec.ID, err)
		}
	}
	if err := r.o.Journal.Append(*rec); err != nil {
		return err
	}
	r.o.Metrics.GetOrCreateCounter(fmt.Sprintf(`vigil_response_actions_total{action=%q,mode=%q,status=%q}`,
		rec.Action, rec.Mode, rec.Status)).Inc()
	level := slog.LevelInfo
	if rec.Status == StatusFailed || (rec.Mode == ModeEnforce && rec.Status == StatusRefused) {
		level = slog.LevelWarn
	}
	r.o.Logger.Log(ctx, level, "response action", "id", rec.ID, "action", rec.Action, "mode", rec.Mode,
		"status", rec.Status, "target", rec.Target.String(), "rule", rec.Alert.Rule, "detail", rec.Detail)
	return nil
}

// reason says why an action runs: the alert's rule and message.
func reason(al *detect.Alert) string {
	if al.Message == "" {
		return "alert " + al.Rule
	}
	return fmt.Sprintf("alert %s (%s): %s", al.Rule, al.Severity, al.Message)
}
