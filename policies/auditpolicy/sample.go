package auditpolicy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/valyala/fastjson"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
)

// SampleStats is what a policy keeps of a sample audit log (JSON lines, as
// kube-apiserver's log backend writes them).
type SampleStats struct {
	// Events and Bytes are the sample's events and their size (without the
	// newline).
	Events, Bytes int64
	// KeptEvents and KeptBytes are what the policy would record of them,
	// bodies it does not record removed.
	KeptEvents, KeptBytes int64
	// Raised counts events the policy records at a higher level than the
	// sample holds them: their bodies are not in the sample, so KeptBytes
	// is a lower bound.
	Raised int64
	// Skipped counts lines that are not audit events; FirstSkip says where
	// the first one is and what is wrong with it.
	Skipped   int64
	FirstSkip string
	// First and Last bound the events' times (requestReceivedTimestamp).
	First, Last time.Time
	// PerRule[i] is what policy rule i decided; the last entry is the
	// requests no rule matched.
	PerRule []RuleStats
}

// RuleStats is what one policy rule decided over a sample.
type RuleStats struct {
	// Rule is the policy rule's index, -1 for requests no rule matched.
	Rule                  int
	Level                 detect.Level
	Events, Bytes         int64
	KeptEvents, KeptBytes int64
}

// maxLine bounds one event line, as the apiserver bounds a request body.
const maxLine = 64 << 20

// Sample reads an audit log from r (gzip or plain, detected from its first
// bytes) and adds what the policy keeps of it to st. name is used in
// messages. Lines that are not audit events are counted, not fatal.
func (p *Policy) Sample(ctx context.Context, r io.Reader, name string, st *SampleStats) error {
	if st.PerRule == nil {
		st.PerRule = make([]RuleStats, len(p.rules)+1)
		for i := range st.PerRule {
			st.PerRule[i].Rule = i
			if i < len(p.rules) {
				st.PerRule[i].Level = levelOf(p.rules[i].Level)
			} else {
				st.PerRule[i].Rule = -1
			}
		}
	}
	br := bufio.NewReaderSize(r, 1<<20)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("read sample %s: %w", name, err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 1<<20)
	}
	var (
		dec    ingest.Decoder
		parser fastjson.Parser
		line   int
	)
	for {
		data, err := br.ReadBytes('\n')
		if len(data) > 0 {
			line++
			if line%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			p.sampleLine(bytes.TrimSpace(data), fmt.Sprintf("%s:%d", name, line), &dec, &parser, st)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read sample %s: %w", name, err)
		}
	}
}

func (p *Policy) sampleLine(data []byte, where string, dec *ingest.Decoder, parser *fastjson.Parser, st *SampleStats) {
	if len(data) == 0 {
		return
	}
	skip := func(err error) {
		st.Skipped++
		if st.FirstSkip == "" {
			st.FirstSkip = fmt.Sprintf("%s: %v", where, err)
		}
	}
	if len(data) > maxLine {
		skip(fmt.Errorf("line of %d bytes is longer than %d", len(data), maxLine))
		return
	}
	ev, err := dec.Decode(data)
	if err != nil {
		skip(err)
		return
	}
	d := p.Evaluate(Attributes(ev))
	size := int64(len(data))
	st.Events++
	st.Bytes += size
	if t := ev.Time(); !t.IsZero() {
		if st.First.IsZero() || t.Before(st.First) {
			st.First = t
		}
		if t.After(st.Last) {
			st.Last = t
		}
	}
	rs := &st.PerRule[len(st.PerRule)-1]
	if d.Rule >= 0 {
		rs = &st.PerRule[d.Rule]
	}
	rs.Events++
	rs.Bytes += size
	if !d.Records(ev.Stage) {
		return
	}
	if was, err := detect.ParseLevel(ev.Level); err == nil && was < d.Level {
		st.Raised++
	}
	kept := size
	dropReq := d.Level < detect.LevelRequest && ev.HasRequestObject()
	dropResp := d.Level < detect.LevelRequestResponse && ev.HasResponseObject()
	if dropReq || dropResp {
		// Parsed again only here: most events carry no body to remove.
		if v, err := parser.ParseBytes(data); err == nil {
			if dropReq {
				kept -= bodySize(v, "requestObject")
			}
			if dropResp {
				kept -= bodySize(v, "responseObject")
			}
		}
	}
	st.KeptEvents++
	st.KeptBytes += kept
	rs.KeptEvents++
	rs.KeptBytes += kept
}

// bodySize is the size of `,"key":value` in the compact JSON of an event.
func bodySize(v *fastjson.Value, key string) int64 {
	b := v.Get(key)
	if b == nil {
		return 0
	}
	return int64(len(b.MarshalTo(nil)) + len(key) + 4)
}

// WriteText prints the estimate for a person.
func (st *SampleStats) WriteText(w io.Writer) error {
	var b bytes.Buffer
	span := st.Last.Sub(st.First).Seconds()
	rate := func(n int64, unit string) string {
		if span <= 0 {
			return ""
		}
		if unit == "B" {
			return fmt.Sprintf(", %s/s", human(float64(n)/span))
		}
		return fmt.Sprintf(", %.1f events/s", float64(n)/span)
	}
	pct := func(a, b int64) float64 {
		if b == 0 {
			return 0
		}
		return 100 * float64(a) / float64(b)
	}
	fmt.Fprintf(&b, "sample: %d events%s, %s%s over %s\n", st.Events, rate(st.Events, ""), human(float64(st.Bytes)), rate(st.Bytes, "B"),
		st.Last.Sub(st.First).Round(time.Second))
	fmt.Fprintf(&b, "kept:   %d events (%.1f%%)%s, %s (%.1f%%)%s\n", st.KeptEvents, pct(st.KeptEvents, st.Events), rate(st.KeptEvents, ""),
		human(float64(st.KeptBytes)), pct(st.KeptBytes, st.Bytes), rate(st.KeptBytes, "B"))
	fmt.Fprintf(&b, "saved:  %d events (%.1f%%)%s, %s (%.1f%%)%s\n", st.Events-st.KeptEvents, pct(st.Events-st.KeptEvents, st.Events),
		rate(st.Events-st.KeptEvents, ""), human(float64(st.Bytes-st.KeptBytes)), pct(st.Bytes-st.KeptBytes, st.Bytes), rate(st.Bytes-st.KeptBytes, "B"))
	fmt.Fprintf(&b, "by policy rule:\n")
	for _, r := range st.PerRule {
		if r.Events == 0 {
			continue
		}
		name := fmt.Sprintf("rules[%d] %s", r.Rule, r.Level)
		if r.Rule < 0 {
			name = "no rule (None)"
		}
		fmt.Fprintf(&b, "  %-28s %8d events %10s  kept %8d events %10s\n", name, r.Events, human(float64(r.Bytes)), r.KeptEvents, human(float64(r.KeptBytes)))
	}
	if st.Raised > 0 {
		fmt.Fprintf(&b, "note: %d events would be recorded at a higher level than the sample holds them; their bodies are not in the sample, so the bytes kept are a lower bound\n", st.Raised)
	}
	if st.Skipped > 0 {
		fmt.Fprintf(&b, "skipped %d lines that are not audit events; the first: %s\n", st.Skipped, st.FirstSkip)
	}
	_, err := w.Write(b.Bytes())
	return err
}

func human(n float64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", n/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", n/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", n/(1<<10))
	}
	return fmt.Sprintf("%.0f B", n)
}
