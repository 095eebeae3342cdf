package auditgen_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/auditgen"
)

// TestWriteDays writes whole days: the events span them, and the stolen
// token's burst is at noon of its day, from outside, with python-requests,
// carrying the deployer's token claims.
func TestWriteDays(t *testing.T) {
	var buf bytes.Buffer
	d := auditgen.Days{Options: auditgen.Options{Seed: 2, Profile: auditgen.ProfileBenignDay, Rate: 0.02}, Days: 3, StolenTokenDay: 2}
	n, err := auditgen.WriteDays(&buf, d)
	if err != nil {
		t.Fatal(err)
	}
	noon := auditgen.DefaultStart.Add(36 * time.Hour)
	var first, last time.Time
	lines, burst := 0, 0
	for line := range bytes.Lines(buf.Bytes()) {
		var ev struct {
			User struct {
				Username string              `json:"username"`
				Extra    map[string][]string `json:"extra"`
			} `json:"user"`
			UserAgent string    `json:"userAgent"`
			SourceIPs []string  `json:"sourceIPs"`
			Time      time.Time `json:"requestReceivedTimestamp"`
		}
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("line %d: %v", lines+1, err)
		}
		lines++
		if first.IsZero() {
			first = ev.Time
		}
		last = ev.Time
		if ev.UserAgent != auditgen.StolenTokenAgent || ev.User.Username != auditgen.StolenTokenUser {
			continue
		}
		burst++
		if len(ev.SourceIPs) != 1 || ev.SourceIPs[0] != auditgen.StolenTokenIP || ev.Time.Before(noon) || ev.Time.After(noon.Add(time.Hour)) {
			t.Errorf("burst request from %v at %v", ev.SourceIPs, ev.Time)
		}
		if len(ev.User.Extra["authentication.kubernetes.io/pod-name"]) != 1 {
			t.Errorf("burst request without the token's pod claim: %v", ev.User.Extra)
		}
	}
	if lines != n {
		t.Errorf("%d lines, WriteDays said %d", lines, n)
	}
	if burst != auditgen.StolenTokenRequests {
		t.Errorf("%d burst requests, want %d", burst, auditgen.StolenTokenRequests)
	}
	if span := last.Sub(first); span < 71*time.Hour || span > 73*time.Hour {
		t.Errorf("3 days span %v", span)
	}
	for _, bad := range []auditgen.Days{{Days: 0}, {Days: 2, StolenTokenDay: 3}, {Days: 1, Options: auditgen.Options{Profile: "nope"}}} {
		if _, err := auditgen.WriteDays(&buf, bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}
