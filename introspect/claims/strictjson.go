package claims

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
// The document is checked by ScanObject (which finds duplicates while it
// validates, and bounds the nesting at MaxDepth), then decoded from the
// same bytes into exactly what encoding/json with UseNumber would give:
// map[string]any, []any, string, json.Number, bool, nil. A second pass of
// encoding/json would cost eight times the scan (its reflection and its
// own validation); FuzzScanObjectAgreesWithParseStrictObject holds the
// decoder to encoding/json's result.
func ParseStrictObject(b []byte) (map[string]any, error) {
	if err := ScanObject(b, nil); err != nil {
		return nil, err
	}
	// The decoded strings share one copy of the document.
	s := scanner{b: b, text: string(b)}
	s.skipSpace()
	obj, _ := s.decodeValue().(map[string]any)
	return obj, nil
}
