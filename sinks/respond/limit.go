package respond

import (
	"slices"
	"strconv"
	"time"
)

// window allows at most max events in any span of per. Times may come out
// of order (replay's clock is alert time, and windowed alerts complete
// late), so it counts the events within per of now on either side.
type window struct {
	max   int
	per   time.Duration
	times []time.Time
}

// fits reports whether one more event at now is allowed.
func (w *window) fits(now time.Time) bool {
	// Forget what is too old to matter for any time near now.
	w.times = slices.DeleteFunc(w.times, func(t time.Time) bool { return now.Sub(t) >= 2*w.per })
	n := 0
	for _, t := range w.times {
		if d := now.Sub(t); d < w.per && d > -w.per {
			n++
		}
	}
	return n < w.max
}

func (w *window) add(now time.Time) { w.times = append(w.times, now) }

// limits holds the per-action windows and the overall cap.
type limits struct {
	total   *window
	actions map[string]*window
}

func newLimits(cfg Config) *limits {
	total := cfg.MaxPerMinute
	if total == 0 {
		total = DefaultMaxPerMinute
	}
	l := &limits{total: &window{max: total, per: time.Minute}, actions: map[string]*window{}}
	for _, r := range cfg.Rules {
		for i, a := range r.Actions {
			n, per := a.limit()
			l.actions[limitKey(r.Name, i)] = &window{max: n, per: per}
		}
	}
	return l
}

func limitKey(rule string, action int) string { return rule + "#" + strconv.Itoa(action) }

// check returns the limit that one more action at now would exceed: the
// action's own, then the cap; "" when it fits.
func (l *limits) check(rule string, action int, now time.Time) string {
	if w := l.actions[limitKey(rule, action)]; w != nil && !w.fits(now) {
		return "the action's rate limit"
	}
	if !l.total.fits(now) {
		return "the cap of actions per minute"
	}
	return ""
}

// add counts one action at now.
func (l *limits) add(rule string, action int, now time.Time) {
	l.total.add(now)
	if w := l.actions[limitKey(rule, action)]; w != nil {
		w.add(now)
	}
}
