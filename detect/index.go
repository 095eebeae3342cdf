package detect

// ruleIndex picks the rules an event can match from the constant resource
// conditions of their match expressions, so a secrets rule never runs on a
// lease update.
type ruleIndex struct {
	// byResource holds, per resource, the rules constrained to it merged
	// with the unconstrained rules, in rule order.
	byResource map[string][]*Rule
	// anyResource are the rules without a resource condition.
	anyResource []*Rule
}

func buildIndex(rules []*Rule) ruleIndex {
	ix := ruleIndex{byResource: map[string][]*Rule{}}
	for _, r := range rules {
		if r.resources == nil {
			ix.anyResource = append(ix.anyResource, r)
		}
	}
	for _, r := range rules {
		for res := range r.resources {
			if _, ok := ix.byResource[res]; ok {
				continue
			}
			var list []*Rule
			for _, c := range rules {
				if _, ok := c.resources[res]; ok || c.resources == nil {
					list = append(list, c)
				}
			}
			ix.byResource[res] = list
		}
	}
	return ix
}

// candidates returns the rules that may match an event on resource with
// verb, in rule order; the verb check is done by the caller.
func (ix *ruleIndex) candidates(resource string) []*Rule {
	if list, ok := ix.byResource[resource]; ok {
		return list
	}
	return ix.anyResource
}

// verbOK reports whether the rule's constant verb condition allows verb.
func (r *Rule) verbOK(verb string) bool {
	if r.verbs == nil {
		return true
	}
	_, ok := r.verbs[verb]
	return ok
}
