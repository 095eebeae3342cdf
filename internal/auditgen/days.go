package auditgen

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"time"
)

// Days is a log of whole days of a profile, for what learns over days
// (first-seen baselines): Options' traffic until Days days of event time
// have passed.
type Days struct {
	Options
	// Days is how many days of event time to write (at least 1).
	Days int
	// StolenTokenDay, when set, is the day (1 is the first) at whose noon
	// the CI deployer's service-account token, which otherwise only ever
	// runs kubectl from its runner pod, is used by a python-requests script
	// from outside the cluster's networks: StolenTokenRequests requests
	// that list and read secrets and pods.
	StolenTokenDay int
}

// StolenTokenRequests is the size of the burst StolenTokenDay writes;
// StolenTokenUser, StolenTokenAgent and StolenTokenIP are who, with what
// and from where.
const (
	StolenTokenRequests = 9
	StolenTokenUser     = "system:serviceaccount:ci:deployer"
	StolenTokenAgent    = "python-requests/2.31.0"
	StolenTokenIP       = "203.0.113.50"
)

// Check reports days New cannot write.
func (d Days) Check() error {
	if d.Days < 1 {
		return fmt.Errorf("days %d: want at least 1", d.Days)
	}
	if d.StolenTokenDay < 0 || d.StolenTokenDay > d.Days {
		return fmt.Errorf("stolen-token day %d: want a day from 1 to %d", d.StolenTokenDay, d.Days)
	}
	return d.Options.Check()
}

// WriteDays writes d's days as JSON lines to w and returns the number of
// events written.
func WriteDays(w io.Writer, d Days) (int, error) {
	if err := d.Check(); err != nil {
		return 0, err
	}
	g := New(d.Options)
	start := g.now
	end := start + int64(d.Days)*int64(24*time.Hour/time.Microsecond)
	burst := int64(-1)
	if d.StolenTokenDay > 0 {
		burst = start + (int64(d.StolenTokenDay-1)*24+12)*int64(time.Hour/time.Microsecond)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	buf := make([]byte, 0, 64<<10)
	n := 0
	for g.now < end {
		if burst >= 0 && g.now >= burst {
			g.stolenToken()
			burst = -1
		}
		buf = g.Append(buf)
		n++
		if len(buf) >= 48<<10 {
			if _, err := bw.Write(buf); err != nil {
				return n, fmt.Errorf("write events: %w", err)
			}
			buf = buf[:0]
		}
	}
	if _, err := bw.Write(buf); err != nil {
		return n, fmt.Errorf("write events: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("write events: %w", err)
	}
	return n, nil
}

// stolenToken queues the burst of the deployer's token used from outside:
// a script checks what the token may do, lists every secret, reads those of
// kube-system and prod, and looks at prod's pods.
func (g *Generator) stolenToken() {
	d := g.c.deployer
	who := *d
	// The token's claims (uid, pod and node binding) stay: it is the same
	// token, presented from elsewhere with another client.
	prefix, _, _ := bytes.Cut(d.frag, []byte(`,"sourceIPs":`))
	who.frag = appendStr(append(appendStr(append(append([]byte(nil), prefix...), `,"sourceIPs":[`...),
		StolenTokenIP), `],"userAgent":`...), StolenTokenAgent)
	prod, sys := g.c.apps[6], g.c.system
	review := &event{who: &who, verb: "create", code: 201}
	g.ref(review, "selfsubjectrulesreviews", "authorization.k8s.io", "v1", "", "", "")
	g.push(review)
	for _, s := range []struct {
		verb, resource, ns, name string
	}{
		{"list", "secrets", "", ""},
		{"list", "secrets", sys.name, ""},
		{"get", "secrets", sys.name, sys.secrets[len(sys.secrets)-3]},
		{"get", "secrets", sys.name, sys.secrets[len(sys.secrets)-2]},
		{"list", "secrets", prod.name, ""},
		{"get", "secrets", prod.name, prod.secrets[0]},
		{"list", "pods", prod.name, ""},
		{"get", "secrets", prod.name, prod.secrets[1]},
	} {
		g.push(g.step(&who, s.verb, s.resource, s.ns, s.name, "", 200))
	}
}
