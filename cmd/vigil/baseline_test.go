package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fastjson"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/auditgen"
	"github.com/vigil-k8s/vigil/policies"
)

// writeDays writes nine days of a benign cluster at a low rate, the CI
// deployer's token stolen at noon of stolenDay, as a whole log and as the
// first eight days and the ninth apart.
func writeDays(t *testing.T, dir string, stolenDay int) (all, first8, ninth string) {
	t.Helper()
	var buf bytes.Buffer
	d := auditgen.Days{Options: auditgen.Options{Seed: 5, Profile: auditgen.ProfileBenignDay, Rate: 0.01}, Days: 9, StolenTokenDay: stolenDay}
	if _, err := auditgen.WriteDays(&buf, d); err != nil {
		t.Fatal(err)
	}
	split := auditgen.DefaultStart.Add(8 * 24 * time.Hour)
	var a, b bytes.Buffer
	for line := range bytes.Lines(buf.Bytes()) {
		at, err := time.Parse(time.RFC3339Nano, fastjson.GetString(line, "requestReceivedTimestamp"))
		if err != nil {
			t.Fatal(err)
		}
		if at.Before(split) {
			a.Write(line)
		} else {
			b.Write(line)
		}
	}
	return writeFile(t, dir, "all.log", buf.Bytes()), writeFile(t, dir, "days1-8.log", a.Bytes()), writeFile(t, dir, "day9.log", b.Bytes())
}

// firstSeen keeps the alerts of first_seen rules.
func firstSeen(t *testing.T, alerts []detect.Alert) []detect.Alert {
	t.Helper()
	cat, err := policies.LoadBuiltin()
	if err != nil {
		t.Fatal(err)
	}
	kind := map[string]detect.WindowKind{}
	for _, r := range cat.Rules {
		if r.Window != nil {
			kind[r.ID] = r.Window.Kind
		}
	}
	var out []detect.Alert
	for _, a := range alerts {
		if kind[a.Rule] == detect.WindowFirstSeen {
			out = append(out, a)
		}
	}
	return out
}

func replayAlerts(t *testing.T, dir, name string, args ...string) []detect.Alert {
	t.Helper()
	out := filepath.Join(dir, name+".alerts")
	if code, _, stderr := vigil(t, "", append([]string{"replay", "-q", "-o", out}, args...)...); code != 0 {
		t.Fatalf("vigil replay %v: exit %d: %s", args, code, stderr)
	}
	return readAlerts(t, out)
}

func fingerprints(as []detect.Alert) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Rule+" "+a.Fingerprint)
	}
	slices.Sort(out)
	return out
}

// TestReplay_BaselineSplit learns eight days in one replay, saves the
// baselines, and replays day 9 against them in another: the stolen token
// raises 1 to 3 first-seen alerts, the same as one replay of nine days,
// and the eight days raise none. A token stolen on day 2, while the
// deployer is still learned, raises none.
func TestReplay_BaselineSplit(t *testing.T) {
	dir := t.TempDir()
	all, first8, ninth := writeDays(t, dir, 9)
	base := filepath.Join(dir, "baselines.json")

	if got := firstSeen(t, replayAlerts(t, dir, "learn", first8, "--save-baseline", base)); len(got) != 0 {
		t.Errorf("days 1 to 8 raised %d first-seen alerts, first: %s", len(got), got[0].Message)
	}
	split := firstSeen(t, replayAlerts(t, dir, "day9", ninth, "--baseline", base))
	if len(split) < 1 || len(split) > 3 {
		t.Fatalf("day 9 raised %d first-seen alerts, want 1 to 3", len(split))
	}
	for _, a := range split {
		if a.User.Username != auditgen.StolenTokenUser || a.UserAgent != auditgen.StolenTokenAgent {
			t.Errorf("alert not about the stolen token: %s: %s", a.Rule, a.Message)
		}
		t.Logf("%s: %s", a.Rule, a.Message)
	}
	whole := firstSeen(t, replayAlerts(t, dir, "whole", all))
	if got, want := fingerprints(split), fingerprints(whole); !slices.Equal(got, want) {
		t.Errorf("split replay %v, one replay %v", got, want)
	}
	if got := firstSeen(t, replayAlerts(t, dir, "without", ninth)); len(got) != 0 {
		t.Errorf("day 9 without baselines raised %d first-seen alerts (all keys are learning)", len(got))
	}

	early, _, _ := writeDays(t, t.TempDir(), 2)
	if got := firstSeen(t, replayAlerts(t, dir, "early", early)); len(got) != 0 {
		t.Errorf("a token stolen on day 2 raised %d first-seen alerts, first: %s", len(got), got[0].Message)
	}
}

// TestBaselineFlags checks the functions behind --baseline and
// --save-baseline: what is saved loads into a fresh engine, the same file
// can be read and written, and a file that is not baselines is refused.
func TestBaselineFlags(t *testing.T) {
	dir := t.TempDir()
	_, first8, _ := writeDays(t, dir, 9)
	cat, err := policies.LoadBuiltin()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := detect.Compile(cat)
	if err != nil {
		t.Fatal(err)
	}
	events, err := os.ReadFile(first8)
	if err != nil {
		t.Fatal(err)
	}
	var lines [][]byte
	for l := range bytes.Lines(events) {
		lines = append(lines, bytes.TrimSpace(l))
	}
	learned, err := detect.New(detect.Options{Rules: rs, Emit: func(detect.Alert) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := processAll(learned, lines); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "b.json")
	f := baselineFlags{load: path, save: path}
	if err := f.saveFrom(learned); err != nil {
		t.Fatal(err)
	}
	saved, _ := os.ReadFile(path)
	fresh, err := detect.New(detect.Options{Rules: rs, Emit: func(detect.Alert) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if err := f.loadInto(fresh, &stderr, false); err != nil || stderr.Len() > 0 {
		t.Fatalf("load: %v %s", err, stderr.String())
	}
	if err := f.saveFrom(fresh); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(path)
	// The loaded engine saw no events: only the header's event time differs.
	if a, b := strings.SplitN(string(saved), "\n", 2)[1], strings.SplitN(string(again), "\n", 2)[1]; a != b || len(a) == 0 {
		t.Errorf("baselines changed through a save and a load")
	}

	bad := writeFile(t, dir, "bad.json", []byte("{}\n"))
	var ue usageError
	if err := (baselineFlags{load: bad}).loadInto(fresh, &stderr, false); !errors.As(err, &ue) || !errors.Is(err, detect.ErrBadBaseline) {
		t.Errorf("a file that is not baselines: %v, want a usage error", err)
	}
}

func processAll(e *detect.Engine, lines [][]byte) error {
	recs := make([]ingest.Record, 0, len(lines))
	for _, l := range lines {
		if len(l) > 0 {
			recs = append(recs, ingest.Record{Data: l})
		}
	}
	if err := e.Process(context.Background(), ingest.Batch{Records: recs}); err != nil {
		return err
	}
	return e.Flush(context.Background())
}
