package report

import (
	"fmt"
	"slices"
	"time"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/detect/incident"
)

// chart is an inline SVG bar chart over time, drawn by the template.
type chart struct {
	Label         string
	Width, Height float64
	Bars          []bar
	// Axis labels: the time at both ends and the tallest bar's value.
	Start, End, Max string
	Legend          []legendItem
}

type bar struct {
	X, Y, W, H float64
	Class      string
	Title      string
}

type legendItem struct{ Class, Text string }

// Chart geometry: the plot sits inside the margins of a fixed viewBox that
// CSS scales to the page width.
const (
	chartW, chartH = 800.0, 140.0
	padL, padR     = 44.0, 8.0
	padT, padB     = 8.0, 22.0
	maxBuckets     = 60
)

// grid splits [from, to] into at most maxBuckets buckets of a whole number
// of steps (the resolution of the counts), aligned on steps.
type grid struct {
	start time.Time
	width time.Duration
	n     int
}

func newGrid(from, to time.Time, step time.Duration) grid {
	step = max(step, time.Second)
	start := from.Truncate(step)
	span := to.Truncate(step).Add(step).Sub(start)
	steps := (span/maxBuckets + step - 1) / step
	width := max(steps, 1) * step
	return grid{start: start, width: width, n: int((span + width - 1) / width)}
}

func (g grid) bucket(t time.Time) int { return min(max(int(t.Sub(g.start)/g.width), 0), g.n-1) }

func (g grid) barX(i int) float64 { return padL + float64(i)*(chartW-padL-padR)/float64(g.n) }
func (g grid) barW() float64      { return (chartW - padL - padR) / float64(g.n) * 0.85 }

func (g grid) label(i int) string {
	from := g.start.Add(g.width * time.Duration(i)).UTC()
	return from.Format("15:04:05") + "–" + from.Add(g.width).Format("15:04:05")
}

var stackOrder = []detect.Severity{detect.SeverityCritical, detect.SeverityHigh, detect.SeverityMedium, detect.SeverityLow, detect.SeverityInfo}

// incidentChart stacks an incident's alerts per bucket by severity, the
// most severe at the bottom.
func incidentChart(inc incident.Incident) chart {
	g := newGrid(inc.FirstTime, inc.LastTime, time.Duration(inc.Activity.StepSeconds)*time.Second)
	counts := make([]map[detect.Severity]int, g.n)
	for i := range counts {
		counts[i] = map[detect.Severity]int{}
	}
	for _, p := range inc.Activity.Points {
		counts[g.bucket(p.Time)][p.Key] += p.N
	}
	peak := 1
	for _, c := range counts {
		n := 0
		for _, v := range c {
			n += v
		}
		peak = max(peak, n)
	}
	c := newChart(fmt.Sprintf("Alerts of incident %s over time, by severity", inc.ID), g, peak)
	seen := map[detect.Severity]bool{}
	for i, cnt := range counts {
		y := padT + plotH()
		for _, sev := range stackOrder {
			n := cnt[sev]
			if n == 0 {
				continue
			}
			seen[sev] = true
			h := float64(n) / float64(peak) * plotH()
			y -= h
			c.Bars = append(c.Bars, bar{X: g.barX(i), Y: y, W: g.barW(), H: h, Class: "sev-" + sev.String(),
				Title: fmt.Sprintf("%s: %d %s", g.label(i), n, sev)})
		}
	}
	for _, sev := range stackOrder {
		if seen[sev] {
			c.Legend = append(c.Legend, legendItem{"sev-" + sev.String(), sev.String()})
		}
	}
	return c
}

// activityChart draws the events read per bucket, and marks the buckets
// where alerts were raised.
func activityChart(d Data) chart {
	step := d.ActivityStep
	for _, inc := range d.Incidents {
		step = max(step, time.Duration(inc.Activity.StepSeconds)*time.Second)
	}
	g := newGrid(d.From, d.To, step)
	events := make([]int, g.n)
	for _, p := range d.Activity {
		events[g.bucket(p.Time)] += p.N
	}
	alerts := make([]int, g.n)
	for _, inc := range d.Incidents {
		for _, p := range inc.Activity.Points {
			alerts[g.bucket(p.Time)] += p.N
		}
	}
	peak := max(slices.Max(events), 1)
	c := newChart("Events read and alerts raised over time", g, peak)
	for i, n := range events {
		if n == 0 {
			continue
		}
		h := float64(n) / float64(peak) * plotH()
		c.Bars = append(c.Bars, bar{X: g.barX(i), Y: padT + plotH() - h, W: g.barW(), H: h, Class: "events",
			Title: fmt.Sprintf("%s: %d events", g.label(i), n)})
	}
	for i, n := range alerts {
		if n > 0 {
			c.Bars = append(c.Bars, bar{X: g.barX(i), Y: padT + plotH() + 2, W: g.barW(), H: 5, Class: "alerts",
				Title: fmt.Sprintf("%s: %d alerts", g.label(i), n)})
		}
	}
	c.Legend = []legendItem{{"events", "events"}, {"alerts", "alerts raised"}}
	return c
}

func newChart(label string, g grid, peak int) chart {
	end := g.start.Add(g.width * time.Duration(g.n))
	return chart{Label: label, Width: chartW, Height: chartH,
		Start: g.start.UTC().Format("15:04:05"), End: end.UTC().Format("15:04:05"), Max: fmt.Sprint(peak)}
}

func plotH() float64              { return chartH - padT - padB }
func (chart) PlotTop() float64    { return padT }
func (chart) PlotBottom() float64 { return padT + plotH() }
func (chart) PlotLeft() float64   { return padL }
func (chart) PlotRight() float64  { return chartW - padR }
func (chart) LabelY() float64     { return chartH - 4 }
