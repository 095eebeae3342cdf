package auditgen

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
	"unsafe"
)

// Defaults.
const (
	// DefaultRate is the event rate in events per second of event time: a
	// large, busy cluster.
	DefaultRate = 2000
	// DefaultNodes is the size of the simulated cluster.
	DefaultNodes = 40
)

// DefaultStart is the event time of the first event when Options.Start is
// zero.
var DefaultStart = time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)

// Options configure a Generator.
type Options struct {
	// Seed selects the sequence; the same options give the same output.
	Seed uint64
	// Start is the log clock at the first event (default DefaultStart).
	Start time.Time
	// Rate is events per second of event time (default DefaultRate).
	Rate float64
	// Nodes is the number of nodes in the simulated cluster (default
	// DefaultNodes).
	Nodes int
	// Profile selects the traffic: ProfileMix (the default),
	// ProfileBenignDay or ProfileAttackHeavy.
	Profile string
}

// Generator produces audit events one line at a time. It is not safe for
// concurrent use.
type Generator struct {
	r *rand.Rand
	// now is the log clock in microseconds since the Unix epoch: the time
	// the event being written reached its stage.
	now    int64
	meanUS float64
	// rv is the cluster's resourceVersion counter.
	rv uint64

	c        *cluster
	patterns []pattern
	cum      []int
	total    int

	// pending holds the ResponseComplete stages of long-running requests
	// (watch, exec), ordered by due time.
	pending pendingHeap
	// script holds the next events of a multi-request action (a Helm
	// install, a rollout, a node joining), written before new patterns run.
	script []event
	// b holds the benign day's own identities, made on first use.
	b *benignCast

	e    event
	uri  []byte
	req  []byte
	resp []byte
	msg  []byte
	ts   [2]tsCache
}

type tsCache struct {
	sec    int64
	prefix []byte
}

// New returns a Generator. It panics on options Check rejects.
func New(o Options) *Generator {
	if err := o.Check(); err != nil {
		panic("auditgen: " + err.Error())
	}
	if o.Start.IsZero() {
		o.Start = DefaultStart
	}
	if o.Rate <= 0 {
		o.Rate = DefaultRate
		if o.Profile == ProfileBenignDay {
			o.Rate = BenignDayRate
		}
	}
	if o.Nodes <= 0 {
		o.Nodes = DefaultNodes
	}
	r := rand.New(rand.NewPCG(o.Seed, 0x5eed0fa0d17))
	g := &Generator{
		r:      r,
		now:    o.Start.UnixMicro(),
		meanUS: 1e6 / o.Rate,
		rv:     1_000_000 + r.Uint64N(1_000_000),
	}
	g.c = newCluster(r, o.Nodes)
	g.patterns = g.allPatterns()
	switch o.Profile {
	case ProfileBenignDay:
		g.patterns = g.benignPatterns()
		g.bootstrap()
	case ProfileAttackHeavy:
		g.patterns = g.attackPatterns()
	}
	for _, p := range g.patterns {
		g.total += p.weight
		g.cum = append(g.cum, g.total)
	}
	for i := range g.ts {
		g.ts[i].sec = math.MinInt64
	}
	return g
}

// Append appends the next event, a JSON object followed by a newline, to
// dst and returns the extended slice.
func (g *Generator) Append(dst []byte) []byte {
	g.now += int64(g.r.ExpFloat64()*g.meanUS) + 1
	if len(g.pending) > 0 && g.pending[0].due <= g.now {
		p := g.pending.pop()
		g.now = max(g.now, p.due)
		return g.appendEvent(dst, &p.ev, p.received)
	}
	if len(g.script) > 0 {
		e := g.script[0]
		g.script = g.script[1:]
		g.newUUID(&e.auditID)
		return g.appendEvent(dst, &e, g.now-g.latency(&e))
	}
	e := &g.e
	*e = event{}
	g.uri, g.req, g.resp = g.uri[:0], g.req[:0], g.resp[:0]
	g.pickPattern()(g, e)
	if e.code == 0 {
		e.code = 200
	}
	if e.stage == "" {
		e.stage = "ResponseComplete"
	}
	if e.level == "" {
		e.level = "Metadata"
	}
	g.newUUID(&e.auditID)
	received := g.now - g.latency(e)
	if e.duration > 0 {
		// A long-running request logs ResponseStarted now and
		// ResponseComplete when it ends; the complete stage carries no
		// bodies.
		done := *e
		done.stage = "ResponseComplete"
		done.uri = string(g.uri)
		done.req, done.resp = nil, nil
		g.pending.push(pendingEvent{due: received + e.duration, received: received, ev: done})
		e.stage = "ResponseStarted"
	}
	e.uri = ""
	return g.appendEvent(dst, e, received)
}

// Events returns n events, each a JSON object without the newline, as
// separate slices backed by one buffer.
func Events(o Options, n int) [][]byte {
	g := New(o)
	buf := make([]byte, 0, n*1300)
	offs := make([]int, 0, n+1)
	for range n {
		offs = append(offs, len(buf))
		buf = g.Append(buf)
	}
	offs = append(offs, len(buf))
	out := make([][]byte, n)
	for i := range n {
		out[i] = buf[offs[i] : offs[i+1]-1 : offs[i+1]-1]
	}
	return out
}

// Write writes n events as JSON lines to w and returns the bytes written.
func Write(w io.Writer, o Options, n int) (int64, error) {
	if err := o.Check(); err != nil {
		return 0, err
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	g := New(o)
	var total int64
	buf := make([]byte, 0, 64<<10)
	for i := range n {
		buf = g.Append(buf)
		if len(buf) >= 48<<10 || i == n-1 {
			m, err := bw.Write(buf)
			total += int64(m)
			if err != nil {
				return total, fmt.Errorf("write events: %w", err)
			}
			buf = buf[:0]
		}
	}
	if err := bw.Flush(); err != nil {
		return total, fmt.Errorf("write events: %w", err)
	}
	return total, nil
}

func (g *Generator) pickPattern() func(*Generator, *event) {
	x := g.r.IntN(g.total)
	lo, hi := 0, len(g.cum)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if g.cum[mid] > x {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return g.patterns[lo].fn
}

// latency returns how long, in microseconds, the request took to reach
// its stage: milliseconds for most, with a tail of slow requests that are
// logged after faster ones received later.
func (g *Generator) latency(e *event) int64 {
	var base float64
	switch e.verb {
	case "get":
		base = 500
	case "list":
		base = 3000
	case "watch":
		return 300 + g.r.Int64N(1500)
	default:
		base = 1500
	}
	l := base * math.Exp(g.r.NormFloat64()*0.6)
	if g.r.IntN(200) == 0 {
		// Throttled by API priority and fairness, or a large list.
		l += float64(200_000 + g.r.Int64N(3_000_000))
	}
	return int64(l) + 50
}

func (g *Generator) chance(p float64) bool { return g.r.Float64() < p }

// nextRV returns a fresh resourceVersion.
func (g *Generator) nextRV() uint64 {
	g.rv += 1 + g.r.Uint64N(3)
	return g.rv
}

const hexDigits = "0123456789abcdef"

func (g *Generator) newUUID(dst *[36]byte) {
	a, b := g.r.Uint64(), g.r.Uint64()
	a = a&^0xf000 | 0x4000         // version 4
	b = b&^(0xc<<60) | (0x8 << 60) // variant 10
	var raw [16]byte
	for i := range 8 {
		raw[i] = byte(a >> (56 - 8*i))
		raw[8+i] = byte(b >> (56 - 8*i))
	}
	j := 0
	for i, c := range raw {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst[j] = '-'
			j++
		}
		dst[j], dst[j+1] = hexDigits[c>>4], hexDigits[c&0xf]
		j += 2
	}
}

// appendUUID appends a fresh UUID as a JSON string body (no quotes).
func (g *Generator) appendUUID(dst []byte) []byte {
	var id [36]byte
	g.newUUID(&id)
	return append(dst, id[:]...)
}

// appendTime appends t (microseconds) as the apiserver writes it:
// 2026-11-22T06:25:37.638648Z.
func (g *Generator) appendTime(dst []byte, us int64) []byte {
	sec, frac := us/1e6, us%1e6
	c := &g.ts[sec&1]
	if c.sec != sec {
		c.sec = sec
		c.prefix = time.Unix(sec, 0).UTC().AppendFormat(c.prefix[:0], "2006-01-02T15:04:05")
	}
	dst = append(dst, c.prefix...)
	var b [8]byte
	b[0] = '.'
	for i := 6; i >= 1; i-- {
		b[i] = byte('0' + frac%10)
		frac /= 10
	}
	b[7] = 'Z'
	return append(dst, b[:]...)
}

// appendSecTime appends a metadata timestamp (whole seconds).
func (g *Generator) appendSecTime(dst []byte, us int64) []byte {
	sec := us / 1e6
	c := &g.ts[sec&1]
	if c.sec != sec {
		c.sec = sec
		c.prefix = time.Unix(sec, 0).UTC().AppendFormat(c.prefix[:0], "2006-01-02T15:04:05")
	}
	dst = append(dst, c.prefix...)
	return append(dst, 'Z')
}

// appendStr appends s as a JSON string with the apiserver's escaping
// (encoding/json with HTML escaping: & < > become \u0026 and so on).
func appendStr(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c != '&' && c != '<' && c != '>' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func appendStrBytes(dst, s []byte) []byte {
	return appendStr(dst, unsafe.String(unsafe.SliceData(s), len(s)))
}

// appendEvent serializes e with the field order of the apiserver.
func (g *Generator) appendEvent(dst []byte, e *event, received int64) []byte {
	dst = append(dst, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"`...)
	dst = append(dst, e.level...)
	dst = append(dst, `","auditID":"`...)
	dst = append(dst, e.auditID[:]...)
	dst = append(dst, `","stage":"`...)
	dst = append(dst, e.stage...)
	dst = append(dst, `","requestURI":`...)
	if e.uri != "" {
		dst = appendStr(dst, e.uri)
	} else {
		dst = appendStrBytes(dst, g.uri)
	}
	dst = append(dst, `,"verb":"`...)
	dst = append(dst, e.verb...)
	dst = append(dst, `",`...)
	dst = append(dst, e.who.frag...)
	if e.resource != "" {
		dst = append(dst, `,"objectRef":{"resource":`...)
		dst = appendStr(dst, e.resource)
		if e.namespace != "" {
			dst = append(dst, `,"namespace":`...)
			dst = appendStr(dst, e.namespace)
		}
		if e.name != "" {
			dst = append(dst, `,"name":`...)
			dst = appendStr(dst, e.name)
		}
		if e.group != "" {
			dst = append(dst, `,"apiGroup":`...)
			dst = appendStr(dst, e.group)
		}
		dst = append(dst, `,"apiVersion":`...)
		dst = appendStr(dst, e.version)
		if e.subresource != "" {
			dst = append(dst, `,"subresource":`...)
			dst = appendStr(dst, e.subresource)
		}
		dst = append(dst, '}')
	}
	dst = g.appendStatus(dst, e)
	if len(e.req) > 0 {
		dst = append(dst, `,"requestObject":`...)
		dst = append(dst, e.req...)
	}
	if len(e.resp) > 0 {
		dst = append(dst, `,"responseObject":`...)
		dst = append(dst, e.resp...)
	}
	dst = append(dst, `,"requestReceivedTimestamp":"`...)
	dst = g.appendTime(dst, received)
	dst = append(dst, `","stageTimestamp":"`...)
	dst = g.appendTime(dst, g.now)
	dst = append(dst, '"')
	if e.code != 401 {
		dst = append(dst, `,"annotations":{"authorization.k8s.io/decision":`...)
		if e.code == 403 {
			dst = append(dst, `"forbid","authorization.k8s.io/reason":""`...)
		} else {
			dst = append(dst, `"allow","authorization.k8s.io/reason":`...)
			dst = appendStr(dst, e.who.reason)
		}
		dst = append(dst, e.annotations...)
		dst = append(dst, '}')
	}
	return append(dst, '}', '\n')
}

func (g *Generator) appendStatus(dst []byte, e *event) []byte {
	dst = append(dst, `,"responseStatus":{"metadata":{}`...)
	switch e.code {
	case 401:
		dst = append(dst, `,"status":"Failure","message":"Unauthorized","reason":"Unauthorized"`...)
	case 403:
		dst = append(dst, `,"status":"Failure","message":`...)
		msg := g.msg[:0]
		if e.name != "" {
			msg = append(msg, e.resource...)
			msg = append(msg, ` "`...)
			msg = append(msg, e.name...)
			msg = append(msg, `" is forbidden: User "`...)
		} else {
			msg = append(msg, e.resource...)
			msg = append(msg, ` is forbidden: User "`...)
		}
		msg = append(msg, e.who.username...)
		msg = append(msg, `" cannot `...)
		msg = append(msg, e.verb...)
		msg = append(msg, ` resource "`...)
		msg = append(msg, e.resource...)
		if e.subresource != "" {
			msg = append(msg, '/')
			msg = append(msg, e.subresource...)
		}
		msg = append(msg, `" in API group "`...)
		msg = append(msg, e.group...)
		if e.namespace != "" {
			msg = append(msg, `" in the namespace "`...)
			msg = append(msg, e.namespace...)
			msg = append(msg, '"')
		} else {
			msg = append(msg, `" at the cluster scope`...)
		}
		dst = appendStrBytes(dst, msg)
		g.msg = msg
		dst = append(dst, `,"reason":"Forbidden","details":{`...)
		if e.name != "" {
			dst = append(dst, `"name":`...)
			dst = appendStr(dst, e.name)
			dst = append(dst, ',')
		}
		dst = append(dst, `"kind":`...)
		dst = appendStr(dst, e.resource)
		dst = append(dst, '}')
	case 404:
		dst = append(dst, `,"status":"Failure","message":`...)
		msg := append(g.msg[:0], e.resource...)
		msg = append(msg, ` "`...)
		msg = append(msg, e.name...)
		msg = append(msg, `" not found`...)
		dst = appendStrBytes(dst, msg)
		g.msg = msg
		dst = append(dst, `,"reason":"NotFound","details":{"name":`...)
		dst = appendStr(dst, e.name)
		dst = append(dst, `,"kind":`...)
		dst = appendStr(dst, e.resource)
		dst = append(dst, '}')
	case 409:
		dst = append(dst, `,"status":"Failure","message":`...)
		msg := append(g.msg[:0], `Operation cannot be fulfilled on `...)
		msg = append(msg, e.resource...)
		if e.group != "" {
			msg = append(msg, '.')
			msg = append(msg, e.group...)
		}
		msg = append(msg, ` "`...)
		msg = append(msg, e.name...)
		msg = append(msg, `": the object has been modified; please apply your changes to the latest version and try again`...)
		dst = appendStrBytes(dst, msg)
		g.msg = msg
		dst = append(dst, `,"reason":"Conflict","details":{"name":`...)
		dst = appendStr(dst, e.name)
		dst = append(dst, `,"kind":`...)
		dst = appendStr(dst, e.resource)
		dst = append(dst, '}')
	case 500:
		dst = append(dst, `,"status":"Failure","message":"error dialing backend: dial tcp 10.0.1.17:10250: connect: connection refused","reason":"InternalError"`...)
	}
	dst = append(dst, `,"code":`...)
	dst = strconv.AppendInt(dst, int64(e.code), 10)
	return append(dst, '}')
}

// event is one request as a pattern describes it.
type event struct {
	level, stage, verb string
	who                *identity
	auditID            [36]byte
	// uri is set only for events kept in the pending heap; otherwise the
	// generator's uri buffer holds the request URI.
	uri                                                    string
	resource, namespace, name, group, version, subresource string
	code                                                   int
	req, resp                                              []byte
	// duration (microseconds) makes the request long-running.
	duration int64
	// annotations are extra annotation members, starting with a comma.
	annotations string
}

type pendingEvent struct {
	due, received int64
	ev            event
}

// pendingHeap is a min-heap by due time (then insertion order, so output
// does not depend on heap internals beyond the key).
type pendingHeap []pendingEvent

func (h *pendingHeap) push(p pendingEvent) {
	*h = append(*h, p)
	s := *h
	i := len(s) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if s[parent].due <= s[i].due {
			break
		}
		s[parent], s[i] = s[i], s[parent]
		i = parent
	}
}

func (h *pendingHeap) pop() pendingEvent {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(s) && s[l].due < s[m].due {
			m = l
		}
		if r < len(s) && s[r].due < s[m].due {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}
