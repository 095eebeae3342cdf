package envelope

import (
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/valyala/fastjson"
)

// EKS control-plane logs go to the CloudWatch Logs group
// /aws/eks/CLUSTER/cluster; the audit log streams are kube-apiserver-audit-*.
// A subscription delivers them gzip-compressed as
// {"messageType":"DATA_MESSAGE","owner","logGroup","logStream",
// "subscriptionFilters","logEvents":[{"id","timestamp","message"}]}, each
// message one audit event, and CONTROL_MESSAGE heartbeats.

// EKSCluster returns the cluster named by an EKS log group
// (/aws/eks/CLUSTER/cluster), or "".
func EKSCluster(logGroup string) string {
	rest, ok := strings.CutPrefix(logGroup, "/aws/eks/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}

// IsEKSAuditStream reports whether a log stream holds the API server's
// audit log (the cluster log group also holds the other control-plane logs).
func IsEKSAuditStream(stream string) bool {
	return stream == "" || strings.HasPrefix(stream, "kube-apiserver-audit")
}

func (d *Decoder) cloudWatchMessage(v *fastjson.Value, origin string) error {
	switch mt := string(v.GetStringBytes("messageType")); mt {
	case "CONTROL_MESSAGE":
		d.skip(origin, "CloudWatch Logs control message")
		return nil
	case "DATA_MESSAGE", "":
	default:
		return d.bad(origin, fmt.Errorf("%w: CloudWatch Logs messageType %q", ErrNotEnvelope, mt), v.MarshalTo(nil))
	}
	group := string(v.GetStringBytes("logGroup"))
	stream := string(v.GetStringBytes("logStream"))
	if !IsEKSAuditStream(stream) {
		d.skip(origin, "log stream "+stream+" is not an audit log")
		return nil
	}
	cluster := EKSCluster(group)
	for i, le := range v.GetArray("logEvents") {
		if err := d.CloudWatchEvent(le.GetStringBytes("message"), string(le.GetStringBytes("id")),
			le.GetInt64("timestamp"), cluster, d.origin(origin, "logEvents", i)); err != nil {
			return err
		}
	}
	return nil
}

// CloudWatchEvent decodes one CloudWatch Logs event of an EKS audit stream:
// its message, id and timestamp (milliseconds since the epoch).
func (d *Decoder) CloudWatchEvent(message []byte, id string, timestampMs int64, cluster, origin string) error {
	m := meta{provider: EKS, origin: origin, cluster: cluster, record: id}
	if timestampMs > 0 {
		m.at = time.UnixMilli(timestampMs)
	}
	return d.auditMessage(message, m)
}

// awsLogs reads a Lambda subscription event: {"awslogs":{"data":base64(gzip)}}.
func (d *Decoder) awsLogs(v *fastjson.Value, origin string, depth int) error {
	raw, err := base64.StdEncoding.DecodeString(string(v.GetStringBytes("awslogs", "data")))
	if err != nil {
		return d.bad(origin, fmt.Errorf("awslogs.data: %w", err), v.MarshalTo(nil))
	}
	data, err := d.gunzip(raw)
	if err != nil {
		return d.bad(origin, fmt.Errorf("awslogs.data: %w", err), raw)
	}
	return d.value(data, origin, false, depth+1)
}

// filterLogEvents reads the output of aws logs filter-log-events (or
// get-log-events): {"events":[{"logStreamName","timestamp","message","eventId"}]}.
func (d *Decoder) filterLogEvents(v *fastjson.Value, origin string) error {
	for i, le := range v.GetArray("events") {
		if s := string(le.GetStringBytes("logStreamName")); !IsEKSAuditStream(s) {
			d.skip(origin, "log stream "+s+" is not an audit log")
			continue
		}
		id := string(le.GetStringBytes("eventId"))
		if err := d.CloudWatchEvent(le.GetStringBytes("message"), id, le.GetInt64("timestamp"), "",
			d.origin(origin, "events", i)); err != nil {
			return err
		}
	}
	return nil
}

// firehoseRequest reads a Firehose HTTP endpoint request body saved to a
// file: {"requestId","timestamp","records":[{"data":base64}]}.
func (d *Decoder) firehoseRequest(v *fastjson.Value, origin string, depth int) error {
	for i, r := range v.GetArray("records") {
		o := d.origin(origin, "records", i)
		raw, err := base64.StdEncoding.DecodeString(string(r.GetStringBytes("data")))
		if err != nil {
			if err := d.bad(o, fmt.Errorf("Firehose record data: %w", err), r.MarshalTo(nil)); err != nil {
				return err
			}
			continue
		}
		if err := d.firehoseRecord(raw, o, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// FirehoseRecord decodes the data of one Firehose record: a CloudWatch Logs
// subscription message, gzip-compressed unless Firehose decompressed it
// (then the message, or with message extraction the bare audit events).
func (d *Decoder) FirehoseRecord(raw []byte, origin string) error {
	return d.firehoseRecord(raw, origin, 0)
}

func (d *Decoder) firehoseRecord(raw []byte, origin string, depth int) error {
	saved := d.Format
	if d.Format == Auto || d.Format == "" {
		d.Format = EKS
	}
	defer func() { d.Format = saved }()
	return d.payload(raw, origin, depth)
}
