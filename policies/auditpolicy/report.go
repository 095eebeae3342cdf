package auditpolicy

import (
	"bytes"
	"fmt"
	"io"
)

// WriteText prints the report for a person: one line per detection, worst
// first, with its reasons indented below, then the policy rules that
// record credentials.
func (r *Report) WriteText(w io.Writer) error {
	var b bytes.Buffer
	for _, s := range []Status{Blind, Degraded, Unverified, Covered} {
		for _, v := range r.Verdicts {
			if v.Status != s {
				continue
			}
			fmt.Fprintf(&b, "%-10s %-8s %s (needs %s)\n", v.Status, v.Severity, v.Rule, v.Need)
			for _, reason := range v.Reasons {
				fmt.Fprintf(&b, "    %s\n", reason)
			}
			for _, warn := range v.Warnings {
				fmt.Fprintf(&b, "    warning: %s\n", warn)
			}
		}
	}
	for _, f := range r.Sensitive {
		fmt.Fprintf(&b, "credentials: %s\n", f)
	}
	fmt.Fprintf(&b, "%d detections: %d covered, %d degraded, %d blind, %d unverified; %d policy rules record credentials\n",
		len(r.Verdicts), r.Count(Covered), r.Count(Degraded), r.Count(Blind), r.Count(Unverified), len(r.Sensitive))
	_, err := w.Write(b.Bytes())
	return err
}
