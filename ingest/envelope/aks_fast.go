package envelope

import (
	"time"

	"github.com/vigil-k8s/vigil/ingest/internal/jsonscan"
)

// fastAKS reads one AKS diagnostic record ({"category","time",
// "resourceId","operationName","properties":{"log":"<event>",...}}) in one
// pass, its log unescaped once, and decodes it as aksRecord would. Like
// fastCloudWatch, it returns false, having passed nothing on, for any
// record it does not read exactly as the parser does: one that starts
// with another member, names a member the envelopes tried before AKS
// look for, repeats or escapes a member name, or has no properties.log
// string.
func (d *Decoder) fastAKS(data []byte, origin string) (bool, error) {
	var category, resourceID, at []byte
	log := [2]int{-1, -1}
	seen, first := 0, true
	mark := len(d.Out)
	end, err := jsonscan.Members(data, 0, func(name []byte, start int) (int, error) {
		bit := memberBit(name, "category", "time", "resourceId", "properties", "operationName",
			"messageType", "awslogs", "logEvents", "events", "records")
		if bit < 0 || bit >= 32 || seen&bit != 0 || first && bit == 0 {
			return start, errNotFast
		}
		first = false
		seen |= bit
		switch bit {
		case 0, 16:
			end, _, err := jsonscan.Value(data, start)
			return end, err
		case 8:
			return d.fastAKSProperties(data, start, &log)
		}
		s, end, ok := plainString(data, start)
		if !ok {
			return start, errNotFast
		}
		switch bit {
		case 1:
			category = s
		case 2:
			at = s
		case 4:
			resourceID = s
		}
		return end, nil
	})
	if err != nil || seen&1 == 0 || log[0] < 0 || jsonscan.End(data, end) != nil {
		d.Out = d.Out[:mark]
		return false, nil
	}
	switch string(category) {
	case "kube-audit", "kube-audit-admin":
	default:
		d.Out = d.Out[:mark]
		d.skip(origin, "AKS log category "+string(category)+" is not an audit log")
		return true, nil
	}
	m := meta{provider: AKS, origin: origin, cluster: d.aksCluster.get(resourceID, AKSCluster)}
	if t, err := time.Parse(time.RFC3339Nano, string(at)); err == nil {
		m.at = t
	}
	return true, d.auditMessage(d.Out[log[0]:log[1]:log[1]], m)
}

// fastAKSProperties reads the properties object, its log string into
// d.Out (where fastMessage annotates it in place).
func (d *Decoder) fastAKSProperties(data []byte, i int, log *[2]int) (int, error) {
	seen := false
	return jsonscan.Members(data, i, func(name []byte, start int) (int, error) {
		bit := memberBit(name, "log")
		if bit < 0 || bit == 1 && seen {
			return start, errNotFast
		}
		if bit == 0 {
			end, _, err := jsonscan.Value(data, start)
			return end, err
		}
		seen = true
		from := len(d.Out)
		buf, end, ok := jsonscan.AppendString(d.Out, data, jsonscan.SkipSpace(data, start))
		if !ok {
			return start, errNotFast
		}
		d.Out, *log = buf, [2]int{from, len(buf)}
		return end, nil
	})
}
