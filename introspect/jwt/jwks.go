package jwt

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/tokengate/tokengate/introspect/internal/httpbody"
)

// Reading one JWKS response: what is accepted, and how long it is good for.

// fetch GETs and parses the JWKS. Only a 200 response with a JSON media
// type and a body within MaxBytes is accepted. Errors never include the
// body (it is the AS's, and could be large or sensitive).
func (s *RemoteKeySet) fetch() (*snapshot, []skippedKey, time.Duration, error) {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, nil, 0, err
	}
	req.Header.Set("Accept", jwksAccept)
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBodyDrain))
		return nil, nil, 0, fmt.Errorf("unexpected HTTP status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !httpbody.IsJSON(ct) {
		return nil, nil, 0, fmt.Errorf("unexpected Content-Type %q (want application/json or application/jwk-set+json)", ct)
	}
	body, err := httpbody.Read(resp.Body, s.maxBytes)
	if errors.Is(err, httpbody.ErrTooLarge) {
		return nil, nil, 0, fmt.Errorf("body larger than %d bytes", s.maxBytes)
	}
	if err != nil {
		return nil, nil, 0, fmt.Errorf("reading body: %w", err)
	}
	snap, skipped, err := parseJWKS(body)
	if err != nil {
		return nil, nil, 0, err
	}
	return snap, skipped, freshness(resp.Header, s.defRefresh), nil
}

// parseJWKS parses a JWK Set (RFC 7517 §5). Each key is parsed on
// its own, so one key of a type we do not know (or a malformed one) is
// skipped instead of failing the whole set.
func parseJWKS(body []byte) (*snapshot, []skippedKey, error) {
	var doc struct {
		Keys *[]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, nil, errors.New("body is not a JWK Set: invalid JSON")
	}
	if doc.Keys == nil {
		return nil, nil, errors.New(`body is not a JWK Set: no "keys" member`)
	}
	keys := make([]jwk.Key, 0, len(*doc.Keys))
	var parseSkipped []skippedKey
	index := make([]int, 0, len(*doc.Keys))
	for i, raw := range *doc.Keys {
		k, err := jwk.ParseKey(raw)
		if err != nil {
			parseSkipped = append(parseSkipped, skippedKey{Index: i, Reason: "unparsable key: " + err.Error()})
			continue
		}
		keys = append(keys, k)
		index = append(index, i)
	}
	snap, skipped := newSnapshot(keys)
	for j := range skipped {
		skipped[j].Index = index[skipped[j].Index] // back to the document's numbering
	}
	return snap, append(parseSkipped, skipped...), nil
}

// freshness is how long a JWKS response may be used before the
// background refresh fetches it again: Cache-Control max-age minus Age
// (RFC 9111 §4.2.1, §4.2.3), clamped to [1m, 24h]; no-store or no-cache
// count as the 1m floor; without a usable max-age, def. Expires is ignored.
//
// It reads Cache-Control itself rather than with github.com/lestrrat-go/httpcc
// (already a dependency of jwx), because httpcc v1.0.1 gets three things
// wrong for us (TestJWKSFreshness shows each): a bare no-cache leaves no
// trace in its ResponseDirective (NoCache() lists field names, empty either
// way), so "max-age=3600, no-cache" would be cached for an hour; it refuses
// max-age="120", which RFC 9111 §5.2 asks recipients to accept; and one
// directive it cannot read fails the whole header, no-store included.
func freshness(h http.Header, def time.Duration) time.Duration {
	maxAge := -1
	for _, line := range h.Values("Cache-Control") {
		for _, dir := range strings.Split(line, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(dir), "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-store", "no-cache":
				return maxAgeFloor
			case "max-age":
				n, err := strconv.Atoi(strings.Trim(strings.TrimSpace(val), `"`))
				if err != nil || n < 0 {
					continue
				}
				if maxAge < 0 || n < maxAge {
					maxAge = n // RFC 9111 §4.2.1: be conservative with duplicates
				}
			}
		}
	}
	if maxAge < 0 {
		return def
	}
	d := time.Duration(min(maxAge, int(maxAgeCeiling/time.Second)+1)) * time.Second
	if age, err := strconv.Atoi(strings.TrimSpace(h.Get("Age"))); err == nil && age > 0 {
		d -= time.Duration(min(age, int(maxAgeCeiling/time.Second))) * time.Second
	}
	return min(max(d, maxAgeFloor), maxAgeCeiling)
}
