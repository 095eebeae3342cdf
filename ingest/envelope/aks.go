package envelope

import (
	"fmt"
	"strings"
	"time"

	"github.com/valyala/fastjson"
)

// AKS diagnostic settings send the API server's audit log as records of
// category kube-audit (every event) or kube-audit-admin (without get and
// list): {"records":[{"category","time","resourceId","operationName",
// "properties":{"log":"<audit event JSON>","stream","pod"}}]} to Event
// Hubs; a storage account holds the same records one per line.

// AKSCluster returns the cluster named by an AKS resource ID
// (.../providers/Microsoft.ContainerService/managedClusters/NAME), or "".
func AKSCluster(resourceID string) string {
	const marker = "/managedclusters/"
	// Lower-cased byte by byte in ASCII only, so that its indexes are the
	// ID's: other letters, and bytes that are not UTF-8, can change length
	// when lower-cased.
	lower := []byte(resourceID)
	for j, c := range lower {
		if c >= 'A' && c <= 'Z' {
			lower[j] = c + 'a' - 'A'
		}
	}
	i := strings.LastIndex(string(lower), marker)
	if i < 0 {
		return ""
	}
	name, _, _ := strings.Cut(resourceID[i+len(marker):], "/")
	return name
}

func (d *Decoder) aksRecord(r *fastjson.Value, origin string, cut *cutInfo) error {
	switch cat := string(r.GetStringBytes("category")); cat {
	case "kube-audit", "kube-audit-admin":
	default:
		d.skip(origin, "AKS log category "+cat+" is not an audit log")
		return nil
	}
	m := meta{provider: AKS, origin: origin, cluster: AKSCluster(string(r.GetStringBytes("resourceId")))}
	if t, err := time.Parse(time.RFC3339Nano, string(r.GetStringBytes("time"))); err == nil {
		m.at = t
	}
	log := r.GetStringBytes("properties", "log")
	if log == nil {
		reason := "no properties.log"
		if cut != nil {
			reason = fmt.Sprintf("record cut before its properties.log (at %q)", cut.lost)
		}
		return d.bad(origin, fmt.Errorf("%w: AKS %s", ErrNotEnvelope, reason), r.MarshalTo(nil))
	}
	return d.auditMessage(log, m)
}
