// Package envelope reads Kubernetes audit events out of the envelopes the
// managed Kubernetes services deliver them in: EKS (CloudWatch Logs
// subscription messages, as Firehose and Lambda receive them and as S3
// holds them), GKE (Cloud Audit Logs LogEntry, from a Pub/Sub log sink or
// exported files) and AKS (diagnostic-settings records, from Event Hubs or
// a storage account). Every event comes out as audit.k8s.io/v1 Event JSON
// with the annotations vigil.dev/source and, where the provider gives one,
// vigil.dev/record; an event the provider cut is rebuilt from what was
// kept and carries vigil.dev/truncated.
//
// Reader is the replay Source: it detects the envelope per file and per
// value and hands raw audit logs to ingest/logfile. Encoder writes audit
// events in each envelope (vigil-convert, tests).
package envelope

import (
	"fmt"
	"strings"
)

// Format names an input format.
type Format string

// Formats. Auto detects the envelope of every JSON value; Audit is
// kube-apiserver's own log format, read by ingest/logfile.
const (
	Auto  Format = "auto"
	Audit Format = "audit"
	EKS   Format = "eks"
	GKE   Format = "gke"
	AKS   Format = "aks"
)

// Providers are the managed services, in the order docs list them.
var Providers = []Format{EKS, GKE, AKS}

// ParseFormat reads auto, audit, eks, gke or aks.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(s)); f {
	case Auto, Audit, EKS, GKE, AKS:
		return f, nil
	case "":
		return Auto, nil
	}
	return "", fmt.Errorf("unknown input format %q (want auto, audit, eks, gke or aks)", s)
}

// ParseProvider reads eks, gke or aks.
func ParseProvider(s string) (Format, error) {
	f, err := ParseFormat(s)
	if err != nil || f == Auto || f == Audit {
		return "", fmt.Errorf("unknown provider %q (want eks, gke or aks)", s)
	}
	return f, nil
}

// The annotations vigil adds to the events it reads from an envelope. The
// event decoder reads the first two into ingest.Event.
const (
	AnnotationSource    = "vigil.dev/source"
	AnnotationTruncated = "vigil.dev/truncated"
	AnnotationRecord    = "vigil.dev/record"
)

// Limits of the providers' transports, as they document them.
const (
	// EKSMaxEventBytes is CloudWatch Logs' limit on one log event,
	// including 26 bytes of overhead; longer messages are cut and end with
	// EKSTruncatedMarker.
	EKSMaxEventBytes   = 256 << 10
	EKSEventOverhead   = 26
	EKSTruncatedMarker = "[Truncated...]"
	// AKSMaxLogBytes is where AKS cuts an audit event in a
	// diagnostic-settings record's properties.log.
	AKSMaxLogBytes = 16 << 10
)
