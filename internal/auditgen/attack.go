package auditgen

import "reflect"

// ProfileAttackHeavy is the mix's cluster under attack: its background
// traffic with the patterns the built-in rules look for (secret reads and
// refusals, exec, port-forward and attach, bindings, self reviews, bad
// tokens, probes, node proxy, debug containers) 25 times as frequent,
// so that over a fifth of the events raise an alert before suppression.
// It measures the alert path: rendering, suppression, encoding, sinks.
const ProfileAttackHeavy = "attack-heavy"

// attackWeight multiplies the weight of each pattern a rule looks for.
const attackWeight = 25

// attacks are the mix's patterns that the built-in rules look for.
var attacks = []func(*Generator, *event){
	(*Generator).scriptedSecretRead, (*Generator).personSecret, (*Generator).adminListAllSecrets,
	(*Generator).personSecretDenied, (*Generator).personExec, (*Generator).personPortForward,
	(*Generator).personAttach, (*Generator).rbacBinding, (*Generator).selfReview,
	(*Generator).badTokenRequest, (*Generator).scannerProbe, (*Generator).nodeProxy,
	(*Generator).debugContainer,
}

// attackPatterns returns the mix with its attack patterns reweighted.
func (g *Generator) attackPatterns() []pattern {
	// Functions do not compare; their code does.
	isAttack := map[uintptr]bool{}
	for _, fn := range attacks {
		isAttack[reflect.ValueOf(fn).Pointer()] = true
	}
	ps := g.allPatterns()
	for i := range ps {
		if isAttack[reflect.ValueOf(ps[i].fn).Pointer()] {
			ps[i].weight *= attackWeight
		}
	}
	return ps
}
