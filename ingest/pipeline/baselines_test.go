package pipeline

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fastjson"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/internal/auditgen"
	"github.com/vigil-k8s/vigil/policies"
)

// firstSeenRules are the built-in first-seen rules.
func firstSeenRules(t *testing.T) *detect.RuleSet {
	t.Helper()
	cat, err := policies.LoadBuiltin()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := detect.Compile(cat)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range rs.Rules {
		if r.Spec.Window != nil && r.Spec.Window.Kind == detect.WindowFirstSeen {
			ids = append(ids, r.Spec.ID)
		}
	}
	if len(ids) < 6 {
		t.Fatalf("%d first-seen rules: %v", len(ids), ids)
	}
	return rs.Subset(ids...)
}

// nineDays is nine days of a benign cluster at a low rate with the CI
// deployer's token stolen at noon of day 9, split before and after day 9
// began.
func nineDays(t *testing.T) (days1to8, day9 [][]byte, split time.Time) {
	t.Helper()
	var buf bytes.Buffer
	d := auditgen.Days{Options: auditgen.Options{Seed: 3, Profile: auditgen.ProfileBenignDay, Rate: 0.01}, Days: 9, StolenTokenDay: 9}
	if _, err := auditgen.WriteDays(&buf, d); err != nil {
		t.Fatal(err)
	}
	split = auditgen.DefaultStart.Add(8 * 24 * time.Hour)
	for line := range bytes.Lines(buf.Bytes()) {
		ev := bytes.TrimSpace(line)
		at, err := time.Parse(time.RFC3339Nano, fastjson.GetString(ev, "requestReceivedTimestamp"))
		if err != nil {
			t.Fatal(err)
		}
		if at.Before(split) {
			days1to8 = append(days1to8, ev)
		} else {
			day9 = append(day9, ev)
		}
	}
	return days1to8, day9, split
}

// postAll sends events to the webhook in EventLists of 500 and waits until
// detection has taken them all.
func (h *harness) postAll(t *testing.T, events [][]byte) {
	t.Helper()
	for i := 0; i < len(events); i += 500 {
		var items []string
		for _, ev := range events[i:min(i+500, len(events))] {
			items = append(items, string(ev))
		}
		h.post(t, eventList(items...))
	}
	waitFor(t, "detection to take every event", func() bool {
		done, _ := h.q.Drained(context.Background())
		return done
	})
}

func (h *harness) firstSeenAlerts(rs *detect.RuleSet) []detect.Alert {
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	var out []detect.Alert
	for _, a := range h.rec.alerts {
		if rs.Rule(a.Rule) != nil {
			out = append(out, a)
		}
	}
	return out
}

// TestBaselines_SurviveRestart learns eight days, restarts serve (after a
// graceful stop, or after a crash with only the last checkpoint on disk)
// and on day 9 raises what the stolen token does that the deployer never
// did, as one run would.
func TestBaselines_SurviveRestart(t *testing.T) {
	rs := firstSeenRules(t)
	learn, burst, split := nineDays(t)
	for _, crash := range []bool{false, true} {
		name := "graceful stop"
		if crash {
			name = "crash after a checkpoint"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			set := func(c *Config) { c.Rules, c.DataDir = rs, dir }
			h := startWith(t, false, set)
			stop := h.run(t)
			h.postAll(t, learn)
			if got := h.firstSeenAlerts(rs); len(got) != 0 {
				t.Fatalf("days 1 to 8 raised %d first-seen alerts, first: %s", len(got), got[0].Message)
			}
			if crash {
				// The checkpoint the idle ticker writes once a minute.
				h.srv.engineMu.Lock()
				h.srv.checkpointBaselines(time.Now().Add(BaselineCheckpoint))
				h.srv.engineMu.Unlock()
				if err := h.srv.Close(); err != nil {
					t.Fatal(err)
				}
				stop()
			} else if err := stop(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, BaselinesFile)); err != nil {
				t.Fatalf("no baselines file: %v", err)
			}

			h2 := startWith(t, false, set)
			stop2 := h2.run(t)
			defer stop2()
			h2.postAll(t, burst)
			got := h2.firstSeenAlerts(rs)
			var msgs []string
			for _, a := range got {
				msgs = append(msgs, a.Rule+": "+a.Message)
				if a.Time.Before(split) || a.User.Username != auditgen.StolenTokenUser {
					t.Errorf("alert not about the stolen token on day 9: %s", a.Message)
				}
			}
			if len(got) < 1 || len(got) > 3 {
				t.Errorf("day 9 raised %d first-seen alerts, want 1 to 3:\n  %s", len(got), strings.Join(msgs, "\n  "))
			}
			t.Logf("day 9:\n  %s", strings.Join(msgs, "\n  "))
		})
	}
}

// TestBaselines_BadFileSetAside: an unreadable baselines file does not stop
// serve; it is kept aside for a look, and learning starts afresh.
func TestBaselines_BadFileSetAside(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, BaselinesFile), []byte("{not json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startWith(t, false, func(c *Config) { c.Rules, c.DataDir = firstSeenRules(t), dir })
	defer h.srv.Close()
	if _, err := os.Stat(filepath.Join(dir, BaselinesFile+".bad")); err != nil {
		t.Errorf("bad file not set aside: %v", err)
	}
}
