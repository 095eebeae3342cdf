package logfile

import (
	"bytes"
	"fmt"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/internal/jsonscan"
)

// split turns a JSON document into records: an EventList's items, an
// array's elements, or the value itself, each a slice of data. It scans
// rather than parses, so one item nested deeper than a parser goes costs
// that item's body and not the document. When the document breaks off, the
// items before the break are returned with the error; a single event that
// breaks off is returned whole, for the decoder to read what it can of it.
func split(data []byte, cluster, origin string) ([]ingest.Record, error) {
	var recs []ingest.Record
	add := func(item []byte, _ int) {
		recs = append(recs, ingest.Record{Data: item, Cluster: cluster, Origin: fmt.Sprintf("%s: item %d", origin, len(recs)+1)})
	}
	start := jsonscan.SkipSpace(data, 0)
	if start < len(data) && data[start] == '[' {
		end, err := jsonscan.Elements(data, start, add)
		if err == nil {
			err = jsonscan.End(data, end)
		}
		return recs, wrapSyntax(err)
	}
	if start >= len(data) || data[start] != '{' {
		end, _, err := jsonscan.Value(data, start)
		if err == nil {
			err = jsonscan.End(data, end)
		}
		if err != nil {
			return nil, wrapSyntax(err)
		}
		return nil, fmt.Errorf("want a JSON object or array, got %s", jsonscan.Type(data[start:end]))
	}
	var kind, apiVersion *string
	seenItems := false
	end, err := jsonscan.Members(data, start, func(name []byte, at int) (int, error) {
		n := jsonscan.Name(name)
		if n == "items" && !seenItems {
			seenItems = true
			if at < len(data) && data[at] == '[' {
				// Split while reading, keeping the items before a break.
				return jsonscan.Elements(data, at, add)
			}
		}
		end, _, err := jsonscan.Value(data, at)
		if err == nil && (n == "kind" && kind == nil || n == "apiVersion" && apiVersion == nil) {
			s, _ := jsonscan.String(data[at:end])
			if n == "kind" {
				kind = &s
			} else {
				apiVersion = &s
			}
		}
		return end, err
	})
	if err == nil {
		err = jsonscan.End(data, end)
	}
	// The apiserver writes kind first; a document cut before it that was
	// reading items is a list too.
	if kind != nil && *kind != "EventList" || kind == nil && (!seenItems || err == nil) {
		if err != nil {
			end = len(bytes.TrimRight(data, " \t\r\n"))
		}
		return []ingest.Record{{Data: data[start:end], Cluster: cluster, Origin: origin + ": item 1"}}, nil
	}
	if apiVersion != nil && *apiVersion != "" && *apiVersion != ingest.APIVersionV1 && *apiVersion != ingest.APIVersionV1beta1 {
		return nil, fmt.Errorf("EventList apiVersion %q, want %s", *apiVersion, ingest.APIVersionV1)
	}
	return recs, wrapSyntax(err)
}

func wrapSyntax(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("malformed JSON: %w", err)
}

// isEventList recognizes a one-line EventList document by its kind near
// the start (the apiserver writes kind first).
func isEventList(line []byte) bool {
	head := line[:min(len(line), 128)]
	// One search decides for the lines that are events.
	if !bytes.Contains(head, []byte(`"EventList"`)) {
		return false
	}
	return bytes.Contains(head, []byte(`"kind":"EventList"`)) || bytes.Contains(head, []byte(`"kind": "EventList"`))
}

// add appends rec, first telling OnSalvage when its JSON is not whole but
// the decoder reads its metadata.
func (r *Reader) add(recs []ingest.Record, rec ingest.Record) []ingest.Record {
	if r.opts.OnSalvage != nil {
		if why := ingest.NotWhole(rec.Data); why != nil {
			if _, err := r.dec.Decode(rec.Data); err == nil {
				r.opts.OnSalvage(rec.Origin, why)
			}
		}
	}
	return append(recs, rec)
}
