package webhook

import (
	"fmt"
	"net/http"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/internal/jsonscan"
)

// item is one event of a request: its JSON as sent, or why it was refused.
type item struct {
	data   []byte
	key    string
	reason string // "" when valid
	detail string
	// salvaged: the event's JSON could not be decoded whole; detection
	// reads what it can of it.
	salvaged bool
}

// body is what parseBody found at the top of a request.
type body struct {
	kind, apiVersion *string
	items            []byte   // the items value
	elems            [][]byte // its elements when it is an array
	hasAuditID       bool
}

// parseBody checks the document and returns its items, each a slice of b
// as sent. A non-zero code refuses the whole request.
//
// The document is split by scanning, not parsed into a tree: a tree parser
// has a nesting limit, and one item nested beyond it (a custom resource
// with a deep body) would make the whole batch a 400, which the apiserver
// retries and then drops, taking every other event with it.
func parseBody(dec *ingest.Decoder, b []byte) ([]item, int, string, string) {
	var top body
	end, err := jsonscan.Members(b, 0, func(name []byte, start int) (int, error) {
		n := jsonscan.Name(name)
		if n == "items" && top.items == nil && start < len(b) && b[start] == '[' {
			// Split while checking: the items are most of the body.
			end, err := jsonscan.Elements(b, start, func(elem []byte, _ int) { top.elems = append(top.elems, elem) })
			top.items = b[start:end]
			return end, err
		}
		end, _, err := jsonscan.Value(b, start)
		if err != nil {
			return end, err
		}
		// Like a parser's lookup, the first of repeated names counts.
		switch v := b[start:end]; n {
		case "kind":
			if top.kind == nil {
				s, _ := jsonscan.String(v)
				top.kind = &s
			}
		case "apiVersion":
			if top.apiVersion == nil {
				s, _ := jsonscan.String(v)
				top.apiVersion = &s
			}
		case "items":
			if top.items == nil {
				top.items = v
			}
		case "auditID":
			top.hasAuditID = true
		}
		return end, nil
	})
	if err == nil {
		err = jsonscan.End(b, end)
	}
	if err != nil {
		if vend, _, verr := jsonscan.Value(b, 0); verr == nil && jsonscan.End(b, vend) == nil {
			return nil, http.StatusBadRequest, ReasonMalformed, "body is a JSON " + jsonscan.Type(b[jsonscan.SkipSpace(b, 0):vend]) + ", want an EventList or Event object"
		}
		return nil, http.StatusBadRequest, ReasonMalformed, "body is not JSON: " + err.Error()
	}
	kind, apiVersion := deref(top.kind), deref(top.apiVersion)
	switch kind {
	case "EventList":
		if apiVersion != ingest.APIVersionV1 && apiVersion != ingest.APIVersionV1beta1 {
			return nil, http.StatusBadRequest, ReasonAPIVersion, fmt.Sprintf("apiVersion %q, want %s", apiVersion, ingest.APIVersionV1)
		}
		if top.items == nil || jsonscan.Type(top.items) == "null" {
			return nil, 0, "", ""
		}
		if top.items[0] != '[' {
			return nil, http.StatusBadRequest, ReasonMalformed, "items is a JSON " + jsonscan.Type(top.items) + ", want an array"
		}
		items := make([]item, len(top.elems))
		for i, elem := range top.elems {
			items[i] = checkItem(dec, elem)
		}
		return items, 0, "", ""
	case "Event", "":
		if kind == "" && !top.hasAuditID {
			return nil, http.StatusBadRequest, ReasonKind, "body has no kind and is not an audit event, want kind EventList or Event"
		}
		if apiVersion != "" && apiVersion != ingest.APIVersionV1 && apiVersion != ingest.APIVersionV1beta1 {
			return nil, http.StatusBadRequest, ReasonAPIVersion, fmt.Sprintf("apiVersion %q, want %s", apiVersion, ingest.APIVersionV1)
		}
		it := checkItem(dec, b)
		if it.reason != "" {
			return nil, http.StatusBadRequest, it.reason, it.detail
		}
		return []item{it}, 0, "", ""
	}
	return nil, http.StatusBadRequest, ReasonKind, fmt.Sprintf("kind %q, want EventList or Event", kind)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// checkItem decodes an item as detection will, which checks what
// detection and de-duplication need of it. An item whose bodies cannot be
// decoded is accepted as sent: detection reads its metadata.
func checkItem(dec *ingest.Decoder, data []byte) item {
	ev, err := dec.Decode(data)
	if err != nil {
		return item{data: data, reason: ReasonBadEvent, detail: err.Error()}
	}
	return item{data: data, key: ingest.DedupKey(ev.AuditID, ev.Stage), salvaged: ev.Vigil.BodyUnparsed}
}
