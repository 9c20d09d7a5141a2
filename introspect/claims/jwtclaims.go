package claims

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// JWTRules are the claim rules of RFC 9068 §4 for one verifier: iss must be
// Issuer exactly, aud must name one of Audience, exp is required, and the
// times hold with Leeway. Unlike an introspection response (NewDecision),
// null is not absent and scope must be a string.
type JWTRules struct {
	Issuer   string
	Audience []string
	Leeway   time.Duration
	// Interned holds Issuer and Audience for the decisions to share.
	Interned *Interned
}

// The claims JWTRules reads itself; every other claim is kept as the token
// carried it.
const (
	jwtISS = iota
	jwtAUD
	jwtEXP
	jwtNBF
	jwtIAT
	jwtSUB
	jwtClientID
	jwtAZP
	jwtScope
	jwtSCP
	jwtACR
	jwtAuthTime
	jwtKnown
)

var jwtNames = [jwtKnown]string{"iss", "aud", "exp", "nbf", "iat", "sub", "client_id", "azp", "scope", "scp", "acr", "auth_time"}

func jwtIndex(name []byte) int {
	switch string(name) { // no allocation: the compiler compares in place
	case "iss":
		return jwtISS
	case "aud":
		return jwtAUD
	case "exp":
		return jwtEXP
	case "nbf":
		return jwtNBF
	case "iat":
		return jwtIAT
	case "sub":
		return jwtSUB
	case "client_id":
		return jwtClientID
	case "azp":
		return jwtAZP
	case "scope":
		return jwtScope
	case "scp":
		return jwtSCP
	case "acr":
		return jwtACR
	case "auth_time":
		return jwtAuthTime
	}
	return -1
}

// jwtReader collects a claims set in one pass: the raw values of the
// claims the rules read, and the others as they are, to be copied once
// into the decision. It holds no pointer to the assembly, so that neither
// needs the heap.
type jwtReader struct {
	raw [jwtKnown][]byte
	// kept are the other members with names that need no escaping; any
	// more, or escaped names, go to more.
	kept  [24]member
	nkept int
	more  []member
	cnf   bool // a cnf claim was seen (RFC 7800)
}

func (r *jwtReader) member(name, value []byte) error {
	if i := jwtIndex(name); i >= 0 {
		r.raw[i] = value
		return nil
	}
	if string(name) == "cnf" {
		r.cnf = true
	}
	if r.nkept < len(r.kept) && plainJSONName(name) {
		r.kept[r.nkept] = member{name, value}
		r.nkept++
		return nil
	}
	r.more = append(r.more, member{[]byte(string(name)), value})
	return nil
}

// Decision reads payload, the JSON claims set of a JWT, applies the rules
// at now and returns the Decision (unsigned until the caller verifies the
// signature) or an invalid_token *Error naming the failed check. The checks
// run in a fixed order whatever the member order: iss, aud, exp, nbf, iat,
// the times, then the types of sub, client_id/azp, scope/scp, acr and
// auth_time.
func (r *JWTRules) Decision(payload []byte, now time.Time) (*Decision, error) {
	var rd jwtReader
	if err := ScanObject(payload, rd.member); err != nil {
		return nil, InvalidToken("malformed", "malformed token: claims are not a valid JSON object", err)
	}
	raw := rd.raw
	var a assembly
	if r.Interned != nil {
		a.shared = &r.Interned.ext
	}
	for _, m := range rd.more {
		a.addRest(string(m.name), m.value)
	}
	a.setSource("jwt")
	if rd.cnf {
		a.fl |= cnfPresent
	}

	if !rawStringIs(raw[jwtISS], r.Issuer) {
		iss, err := optionalString(raw[jwtISS], "iss")
		if err != nil {
			return nil, InvalidToken("malformed", "malformed token: iss claim must be a string", err)
		}
		if iss != r.Issuer {
			e := InvalidToken("iss", "issuer mismatch", nil)
			e.Hint = fmt.Sprintf("token iss %q, configured issuer %q (compared exactly, trailing slash included)", Shorten(iss), r.Issuer)
			return nil, e
		}
	}
	a.fl |= issClaimed
	a.setIssuer(r.Issuer)

	if i := r.configuredAudience(raw[jwtAUD]); i >= 0 {
		// The common case: one audience, this API's, shared.
		a.setAudience(r.Audience[i : i+1])
		if raw[jwtAUD][0] == '"' {
			a.fl |= audClaimed
		} else {
			a.addRest("aud", raw[jwtAUD]) // read back as the array it was
		}
	} else {
		aud, err := stringOrListRaw(raw[jwtAUD], "aud")
		if err != nil {
			return nil, InvalidToken("malformed", "malformed token: aud claim must be a string or an array of strings", err)
		}
		if len(aud) == 0 {
			e := InvalidToken("aud_missing", "audience mismatch: the token has no aud claim", nil)
			e.Hint = fmt.Sprintf("RFC 9068 access tokens must name their API in aud; configure the AS to issue tokens with audience %q", r.Audience[0])
			return nil, e
		}
		if !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(r.Audience, a) }) {
			e := InvalidToken("aud", "audience mismatch", nil)
			e.Hint = fmt.Sprintf("token aud %q does not contain any of the configured audience %q", shortenAll(aud), r.Audience)
			return nil, e
		}
		a.setAudience(aud)
		if raw[jwtAUD][0] == '"' {
			a.fl |= audClaimed
		} else {
			a.addRest("aud", raw[jwtAUD])
		}
	}

	if raw[jwtEXP] == nil {
		return nil, InvalidToken("exp_missing", "malformed token: missing exp claim", nil)
	}
	for slot, idx := range [3]int{jwtEXP, jwtNBF, jwtIAT} {
		if err := readTime(&a, raw[idx], jwtNames[idx], slot); err != nil {
			return nil, err
		}
	}
	if e := CheckTimes(a.exp, a.times[relNBF], a.times[relIAT], now, r.Leeway); e != nil {
		return nil, e
	}

	sub, err := optionalRawString(raw[jwtSUB], "sub")
	if err != nil {
		return nil, InvalidToken("malformed", "malformed token: sub claim must be a string", err)
	}
	if raw[jwtSUB] != nil {
		a.fl |= subClaimed
	}
	a.strs[0] = sub
	// RFC 9068 §2.2: client_id; OpenID-style ASes (Keycloak, Entra) send azp.
	if raw[jwtClientID] != nil {
		if a.strs[1], err = optionalRawString(raw[jwtClientID], "client_id"); err != nil {
			return nil, InvalidToken("malformed", "malformed token: client_id claim must be a string", err)
		}
		a.fl |= clientClaimed
		if raw[jwtAZP] != nil {
			a.addRest("azp", raw[jwtAZP])
		}
	} else if raw[jwtAZP] != nil {
		if a.strs[1], err = optionalRawString(raw[jwtAZP], "azp"); err != nil {
			return nil, InvalidToken("malformed", "malformed token: azp claim must be a string", err)
		}
		a.fl |= azpClaimed
	}

	// RFC 9068 §2.2.3: scope is a space-separated string (RFC 6749 §3.3).
	// Some ASes (Entra, Okta) send scp as an array or a string instead;
	// scope wins when both are present.
	if raw[jwtScope] != nil {
		scope, err := optionalRawString(raw[jwtScope], "scope")
		if err != nil {
			return nil, InvalidToken("malformed", "malformed token: scope claim must be a space-separated string", err)
		}
		if canonicalScope(scope) {
			a.strs[2] = scope
			a.fl |= scopeClaimed
		} else {
			a.strs[2] = []byte(strings.Join(SplitScope(string(scope)), " "))
			a.addRest("scope", raw[jwtScope])
		}
		if raw[jwtSCP] != nil {
			a.addRest("scp", raw[jwtSCP])
		}
	} else if raw[jwtSCP] != nil {
		scp, err := stringOrListRaw(raw[jwtSCP], "scp")
		if err != nil {
			return nil, InvalidToken("malformed", "malformed token: scp claim must be a string or an array of strings", err)
		}
		var all []string
		for _, s := range scp {
			all = append(all, SplitScope(s)...)
		}
		a.strs[2] = []byte(strings.Join(all, " "))
		a.addRest("scp", raw[jwtSCP])
	}
	// RFC 9068 §2.2.1: acr and auth_time, for step-up (RFC 9470).
	if raw[jwtACR] != nil {
		if a.strs[3], err = optionalRawString(raw[jwtACR], "acr"); err != nil {
			return nil, InvalidToken("malformed", "malformed token: acr claim must be a string", err)
		}
		a.fl |= acrClaimed
	}
	if err := readTime(&a, raw[jwtAuthTime], "auth_time", 3); err != nil {
		return nil, err
	}
	return a.build(rd.kept[:rd.nkept]), nil
}

// rawStringIs reports whether raw is the JSON string want, spelled without
// escapes (the usual spelling: anything else takes the decoding path).
func rawStringIs(raw []byte, want string) bool {
	return len(raw) == len(want)+2 && raw[0] == '"' && string(raw[1:len(raw)-1]) == want && !strings.Contains(want, `\`) && !strings.Contains(want, `"`)
}

// configuredAudience is the index in r.Audience of the single audience raw
// names, as a plain string or an array of one plain string (as many JWT
// libraries write even one audience), or -1.
func (r *JWTRules) configuredAudience(raw []byte) int {
	if len(raw) > 2 && raw[0] == '[' {
		raw = bytes.TrimSpace(raw[1 : len(raw)-1])
		if bytes.IndexByte(raw, ',') >= 0 {
			return -1 // several (or a comma inside one: the slow path decides)
		}
	}
	for i, a := range r.Audience {
		if rawStringIs(raw, a) {
			return i
		}
	}
	return -1
}

// readTime reads NumericDate claim name into exp (slot 0) or a.times[slot-1].
// A plain integer is held in the Decision alone; any other spelling is kept
// in the rest as well, so that the claim reads back as it was sent.
func readTime(a *assembly, raw []byte, name string, slot int) error {
	if raw == nil {
		return nil
	}
	t, err := numericDateRaw(raw, name)
	if err != nil {
		return InvalidToken("malformed", "malformed token: "+err.Error(), err)
	}
	plain := isPlainInteger(raw) && t.Nanosecond() == 0
	if slot == 0 {
		a.exp = t
		if plain {
			a.fl |= expClaimed
		}
	} else {
		a.times[slot-1] = t
		if plain {
			a.fl |= relClaimed << (slot - 1)
		}
	}
	if !plain {
		a.addRest(name, raw)
	}
	return nil
}

// numericDateRaw is NumericDate for a raw JSON value.
func numericDateRaw(raw []byte, name string) (time.Time, error) {
	if raw == nil {
		return time.Time{}, nil
	}
	if c := raw[0]; c != '-' && (c < '0' || c > '9') {
		return time.Time{}, fmt.Errorf("%s claim must be a JSON number (NumericDate), not %s", name, JSONKind(raw))
	}
	return parseNumericDate(raw, name)
}

// parseNumericDate is the one NumericDate number reader (RFC 7519 §2: seconds,
// possibly fractional, here from the epoch to the end of year 9999), for a
// JSON number's text.
func parseNumericDate(text []byte, name string) (time.Time, error) {
	if isPlainInteger(text) && len(text) <= 12 {
		var n int64 // at most 12 digits: no overflow
		for _, c := range text {
			n = n*10 + int64(c-'0')
		}
		if n <= maxNumericDate {
			return time.Unix(n, 0).UTC(), nil
		}
		return time.Time{}, fmt.Errorf("%s claim is out of range", name)
	}
	f, err := strconv.ParseFloat(string(text), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, fmt.Errorf("%s claim is out of range", name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}

// isPlainInteger: digits only, no leading zero, as strconv.FormatInt
// writes it.
func isPlainInteger(raw []byte) bool {
	if len(raw) == 0 || (raw[0] == '0' && len(raw) > 1) {
		return false
	}
	for _, c := range raw {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// optionalRawString is the content of a JSON string value, raw when it has
// no escapes (no copy), decoded otherwise; nil raw is absent.
func optionalRawString(raw []byte, name string) ([]byte, error) {
	if raw == nil {
		return nil, nil
	}
	if raw[0] != '"' {
		return nil, fmt.Errorf("%s must be a string, not %s", name, JSONKind(raw))
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw[1 : len(raw)-1], nil
	}
	s, err := StringValue(raw)
	return []byte(s), err
}

func optionalString(raw []byte, name string) (string, error) {
	b, err := optionalRawString(raw, name)
	return string(b), err
}

// stringOrListRaw reads aud or scp: a string or an array of strings (RFC
// 7519 §4.1.3); nil raw is absent.
func stringOrListRaw(raw []byte, name string) ([]string, error) {
	switch {
	case raw == nil:
		return nil, nil
	case raw[0] == '"':
		s, err := StringValue(raw)
		return []string{s}, err
	case raw[0] != '[':
		return nil, fmt.Errorf("%s must be a string or an array of strings, not %s", name, JSONKind(raw))
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(elems))
	for _, e := range elems {
		if len(e) == 0 || e[0] != '"' {
			return nil, fmt.Errorf("%s must be a string or an array of strings, found %s in the array", name, JSONKind(e))
		}
		s, err := StringValue(e)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// canonicalScope: SplitScope and a join with single spaces give s back.
func canonicalScope(s []byte) bool {
	return !(len(s) > 0 && (s[0] == ' ' || s[len(s)-1] == ' ')) && !bytes.Contains(s, []byte("  "))
}

func shortenAll(ss []string) []string {
	const maxItems = 8
	out := make([]string, 0, min(len(ss), maxItems))
	for i, s := range ss {
		if i == maxItems {
			out = append(out, "…")
			break
		}
		out = append(out, Shorten(s))
	}
	return out
}
