package incident

import (
	"slices"
	"testing"

	"github.com/vigil-k8s/vigil/policies"
)

func TestTacticsOf(t *testing.T) {
	tests := []struct {
		name string
		tags []string
		want []string
	}{
		{"tactic tags win, in matrix order", []string{"attack.privilege-escalation", "T1609", "attack.discovery"}, []string{"privilege-escalation", "discovery"}},
		{"sigma spelling", []string{"attack.credential_access"}, []string{"credential-access"}},
		{"techniques when no tactic", []string{"T1609", "T1552.007"}, []string{"execution", "credential-access"}},
		{"sub-technique falls back to its parent", []string{"attack.t1098.006"}, []string{"persistence"}},
		{"unknown", []string{"custom", "T9999"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := TacticsOf(tt.tags); !slices.Equal(got, tt.want) {
				t.Errorf("TacticsOf(%v) = %v, want %v", tt.tags, got, tt.want)
			}
		})
	}
}

func TestStageOf_EveryTactic(t *testing.T) {
	for _, tactic := range Tactics {
		if tactic != "resource-development" && StageOf(tactic) == NoStage {
			t.Errorf("tactic %s has no kill-chain stage", tactic)
		}
	}
	for id, tactic := range techniqueTactic {
		if !slices.Contains(Tactics, tactic) {
			t.Errorf("technique %s: unknown tactic %q", id, tactic)
		}
	}
}

// Every built-in rule must count toward a kill-chain stage: a rule whose
// tags name no tactic and no known technique is invisible to the score.
func TestTacticsOf_BuiltinRules(t *testing.T) {
	cat, err := policies.LoadBuiltin()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range cat.Rules {
		tactics := TacticsOf(r.Tags)
		if len(tactics) == 0 {
			t.Errorf("rule %s: tags %v name no ATT&CK tactic (attack.<tactic>) and no technique in the table", r.ID, r.Tags)
			continue
		}
		staged := false
		for _, tactic := range tactics {
			staged = staged || StageOf(tactic) != NoStage
		}
		if !staged {
			t.Errorf("rule %s: tactics %v reach no kill-chain stage", r.ID, tactics)
		}
	}
}
