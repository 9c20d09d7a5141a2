package claims

import (
	"bytes"
	"encoding/json"
	"errors"
)

// ParseStrictObject is the one JSON reader for everything that decides a
// token: JOSE headers, JWT claims sets, introspection and token-endpoint
// responses. It requires valid UTF-8 (RFC 8725 §3.7), exactly one JSON
// object, no duplicate member names in any object at any depth (RFC 7515
// §4, RFC 7519 §4: a parser MUST reject them or keep the last; rejecting
// means no parser differential with whatever the upstream or the
// authorization server's own library reads — {"active":false,"active":true}
// must not be true here and false there), and nothing after it. Numbers
// come back as json.Number.
//
// The document is checked by ScanObject first (which finds duplicates
// while it validates, and bounds the nesting at MaxDepth), then decoded by
// encoding/json, which then cannot fail on anything but a top-level value
// that is not an object.
func ParseStrictObject(b []byte) (map[string]any, error) {
	if err := ScanObject(b, nil); err != nil {
		return nil, err
	}
	var obj map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, errors.New("not a JSON object")
	}
	return obj, nil
}
