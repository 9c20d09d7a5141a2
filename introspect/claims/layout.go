package claims

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// How a Decision is laid out: see the Decision type. A field whose value
// came from a claim and can be given back exactly ("claimed") is not kept a
// second time in the rest JSON; anything unusual (a fractional or far-away
// time, an issuer or audience the gateway was not configured with, strings
// longer than 64 KiB in all) goes to a private extras.

const (
	noTime = math.MinInt64
	noRel  = math.MinInt32
)

const (
	relNBF = iota
	relIAT
	relAuthTime
)

var relNames = [3]string{"nbf", "iat", "auth_time"}

type flags uint32

const (
	sourceMask          flags = 3
	sourceJWT           flags = 1
	sourceIntrospection flags = 2
	sourceOther         flags = 3

	subClaimed    flags = 1 << 2
	clientClaimed flags = 1 << 3 // client_id
	azpClaimed    flags = 1 << 4
	scopeClaimed  flags = 1 << 5
	acrClaimed    flags = 1 << 6
	issClaimed    flags = 1 << 7
	audClaimed    flags = 1 << 8 // a single string
	audInterned   flags = 1 << 9
	audShift            = 10 // 4 bits of index into extras.audiences
	expClaimed    flags = 1 << 14
	relClaimed    flags = 1 << 15 // << relNBF, relIAT, relAuthTime
	wide          flags = 1 << 18 // the four strings are in extras.strs
	issSet        flags = 1 << 19 // extras.issuer is the issuer (shared or own)
	cnfPresent    flags = 1 << 20 // the rest holds a cnf claim (RFC 7800)
)

const maxInterned = 16

func (f flags) source() flags { return f & sourceMask }

func (f flags) audIndex() (int, bool) {
	return int(f>>audShift) & (maxInterned - 1), f&audInterned != 0
}

// extras holds what a Decision's compact fields cannot.
type extras struct {
	issuer    string
	audiences []string // interned, indexed by the flags
	audience  []string // this decision's own
	source    string
	exp       time.Time
	times     [3]time.Time
	strs      [4]string // sub, client_id, scope, acr of a wide decision
}

// Interned are strings many decisions share: the issuer and the audiences
// the gateway is configured with. A Decision that carries one of them
// points at it instead of holding its own copy.
type Interned struct{ ext extras }

// NewInterned interns issuer and the first 16 audiences.
func NewInterned(issuer string, audiences []string) *Interned {
	return &Interned{ext: extras{issuer: issuer, audiences: audiences[:min(len(audiences), maxInterned):min(len(audiences), maxInterned)]}}
}

// Build makes the immutable Decision. The slices and the claims map must
// not be changed by the caller afterwards.
func (f DecisionFields) Build() *Decision {
	d := new(Decision)
	d.fill(f)
	return d
}

// assembly is a Decision being put together, from DecisionFields (fill) or
// straight from a JWT's claims (JWTRules.Decision).
type assembly struct {
	strs [4][]byte // sub, client_id, scope, acr
	// rest are members of the rest object already written out,
	// comma-separated; build copies others in as they came.
	rest        []byte
	fl          flags
	exp         time.Time
	times       [3]time.Time
	shared, own *extras
}

func (a *assembly) ext() *extras {
	if a.own == nil {
		a.own = new(extras)
		if a.shared != nil {
			*a.own = *a.shared
		}
	}
	return a.own
}

// addRest appends a member to the rest object; value is valid JSON.
func (a *assembly) addRest(name string, value []byte) {
	if len(a.rest) > 0 {
		a.rest = append(a.rest, ',')
	}
	a.rest = appendJSONString(a.rest, name)
	a.rest = append(a.rest, ':')
	a.rest = append(a.rest, value...)
}

func (a *assembly) setIssuer(iss string) {
	if iss == "" {
		return
	}
	a.fl |= issSet
	if a.shared == nil || a.shared.issuer != iss {
		a.ext().issuer = iss
	}
}

// setAudience stores aud: shared when it is one configured audience.
func (a *assembly) setAudience(aud []string) {
	if len(aud) == 0 {
		return
	}
	if len(aud) == 1 && a.shared != nil {
		for i, have := range a.shared.audiences {
			if have == aud[0] {
				a.fl |= audInterned | flags(i)<<audShift
				return
			}
		}
	}
	a.ext().audience = aud
}

func (a *assembly) setSource(source string) {
	switch source {
	case "":
	case "jwt":
		a.fl |= sourceJWT
	case "introspection":
		a.fl |= sourceIntrospection
	default:
		a.fl |= sourceOther
		a.ext().source = source
	}
}

// build makes the Decision, its rest object being kept (members copied as
// they came) and a.rest. kept is a parameter rather than a field so that an
// assembly on the stack can point nowhere else.
func (a *assembly) build(kept []member) *Decision {
	d := &Decision{exp: noTime, flags: a.fl}
	if !a.exp.IsZero() {
		if s := a.exp.Unix(); s >= 0 && s < math.MaxInt64/1_000_000_000-1 {
			d.exp = a.exp.UnixNano()
		} else {
			a.ext().exp = a.exp
		}
	}
	base := d.relBase()
	for i, t := range a.times {
		d.rel[i] = noRel
		if t.IsZero() {
			continue
		}
		if delta := t.Unix() - base; t.Nanosecond() == 0 && delta > noRel && delta <= math.MaxInt32 {
			d.rel[i] = int32(delta)
		} else {
			a.ext().times[i] = t
		}
	}
	n := 0
	for _, s := range a.strs {
		n += len(s)
	}
	if n > math.MaxUint16 {
		d.flags |= wide
		for i, s := range a.strs {
			a.ext().strs[i] = string(s)
		}
		n = 0
	}
	restLen := len(a.rest)
	for _, m := range kept {
		restLen += len(m.name) + len(m.value) + 4 // "name":value,
	}
	var sb strings.Builder
	if restLen > 0 {
		sb.Grow(n + restLen + 2)
	} else {
		sb.Grow(n)
	}
	if d.flags&wide == 0 {
		for i, s := range a.strs {
			sb.Write(s)
			d.end[i] = uint16(sb.Len())
		}
	}
	if restLen > 0 {
		sb.WriteByte('{')
		for i, m := range kept {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteByte('"')
			sb.Write(m.name)
			sb.WriteString(`":`)
			sb.Write(m.value)
		}
		if len(kept) > 0 && len(a.rest) > 0 {
			sb.WriteByte(',')
		}
		sb.Write(a.rest)
		sb.WriteByte('}')
	}
	d.data = sb.String()
	d.ext = a.shared
	if a.own != nil {
		d.ext = a.own
	}
	return d
}

func (d *Decision) fill(f DecisionFields) {
	a := assembly{exp: f.ExpiresAt, times: [3]time.Time{f.NotBefore, f.IssuedAt, f.AuthTime}}
	if f.Interned != nil {
		a.shared = &f.Interned.ext
	}
	claimed := make(map[string]bool, 11)
	claimedString := func(name, value string, bit flags) {
		if s, ok := f.Claims[name].(string); ok && s == value {
			claimed[name] = true
			a.fl |= bit
		}
	}
	claimedString("sub", f.Subject, subClaimed)
	if _, has := f.Claims["client_id"]; has {
		claimedString("client_id", f.ClientID, clientClaimed)
	} else {
		claimedString("azp", f.ClientID, azpClaimed)
	}
	scope := strings.Join(f.Scopes, " ")
	claimedString("scope", scope, scopeClaimed)
	claimedString("acr", f.ACR, acrClaimed)
	claimedString("iss", f.Issuer, issClaimed)
	a.setIssuer(f.Issuer)
	a.setAudience(f.Audience)
	if len(f.Audience) == 1 {
		claimedString("aud", f.Audience[0], audClaimed)
	}
	a.setSource(f.Source)
	if !f.ExpiresAt.IsZero() && claimedTime(f.Claims, "exp", f.ExpiresAt) {
		claimed["exp"] = true
		a.fl |= expClaimed
	}
	for i, t := range a.times {
		if !t.IsZero() && claimedTime(f.Claims, relNames[i], t) {
			claimed[relNames[i]] = true
			a.fl |= relClaimed << i
		}
	}
	a.strs = [4][]byte{[]byte(f.Subject), []byte(f.ClientID), []byte(scope), []byte(f.ACR)}
	if _, ok := f.Claims["cnf"]; ok {
		a.fl |= cnfPresent
	}
	names := make([]string, 0, len(f.Claims))
	for name := range f.Claims {
		if !claimed[name] {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		// Values from the strict reader always encode; a hand-built map
		// that does not is a programming error.
		b, err := json.Marshal(f.Claims[name])
		if err != nil {
			panic("claims: DecisionFields.Claims cannot be encoded as JSON: " + err.Error())
		}
		a.addRest(name, b)
	}
	n := a.build(nil)
	// Field by field: the memo must not be copied.
	d.data, d.ext, d.exp, d.rel, d.end, d.flags = n.data, n.ext, n.exp, n.rel, n.end, n.flags
}

// member is a claim to keep as it came: its name needs no escaping, its
// value is valid JSON.
type member struct{ name, value []byte }

// plainJSONName: name can be written between quotes as it is.
func plainJSONName(name []byte) bool {
	for _, c := range name {
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return false
		}
	}
	return true
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	if !plainJSONName([]byte(s)) {
		q, _ := json.Marshal(s)
		return append(b, q...)
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// claimedTime reports whether claims[name] is exactly t as a plain integer
// NumericDate, so that the text can be written back as it came.
func claimedTime(claims map[string]any, name string, t time.Time) bool {
	n, ok := claims[name].(json.Number)
	return ok && t.Nanosecond() == 0 && string(n) == strconv.FormatInt(t.Unix(), 10)
}

func (d *Decision) relBase() int64 {
	if d.exp == noTime {
		return 0
	}
	return d.exp / 1e9
}

func (d *Decision) relTime(i int) time.Time {
	switch {
	case d.rel[i] != noRel:
		return time.Unix(d.relBase()+int64(d.rel[i]), 0).UTC()
	case d.ext != nil:
		return d.ext.times[i]
	}
	return time.Time{}
}

// strings of a wide decision live in extras; see the accessors.
func (d *Decision) str(i int) string {
	if d.flags&wide != 0 {
		return d.ext.strs[i]
	}
	start := uint16(0)
	if i > 0 {
		start = d.end[i-1]
	}
	return d.data[start:d.end[i]]
}

// restClaims decodes the claims not held in fields.
func (d *Decision) restClaims() map[string]any {
	r := d.rest()
	if r == "" {
		return nil
	}
	obj, err := ParseStrictObject([]byte(r))
	if err != nil {
		return nil // written by fill from valid JSON: cannot happen
	}
	return obj
}

var errFound = errors.New("found")

// restMember decodes one member of the rest, without decoding the others:
// a require_claim or a placeholder reads one claim per request. Strings
// without escapes and numbers come back as parts of d's own string, with
// no allocation.
func (d *Decision) restMember(name string) (any, bool) {
	r := d.rest()
	if r == "" {
		return nil, false
	}
	// A read-only view of the string: ScanObject never writes to its input.
	b := unsafe.Slice(unsafe.StringData(r), len(r))
	var raw []byte
	err := ScanObject(b, func(n, v []byte) error {
		if string(n) == name {
			raw = v
			return errFound
		}
		return nil
	})
	if err != errFound { //nolint:errorlint // our own sentinel, never wrapped
		return nil, false
	}
	// raw aliases b; its place in r gives the value as a substring.
	text := string(raw)
	if off := int(uintptr(unsafe.Pointer(unsafe.SliceData(raw))) - uintptr(unsafe.Pointer(unsafe.StringData(r)))); off >= 0 && off+len(raw) <= len(r) {
		text = r[off : off+len(raw)]
	}
	switch raw[0] {
	case '"':
		if bytes.IndexByte(raw, '\\') < 0 {
			return text[1 : len(text)-1], true
		}
	case 't':
		return true, true
	case 'f':
		return false, true
	case 'n':
		return nil, true
	case '{', '[':
	default:
		return json.Number(text), true
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return nil, false // valid JSON by construction: cannot happen
	}
	return v, true
}

// top is the top-level claim name, from the rest or from a field that
// came from it.
func (d *Decision) top(name string) (any, bool) {
	fl := d.flags
	switch name {
	case "sub":
		if fl&subClaimed != 0 {
			return d.Subject(), true
		}
	case "client_id":
		if fl&clientClaimed != 0 {
			return d.ClientID(), true
		}
	case "azp":
		if fl&azpClaimed != 0 {
			return d.ClientID(), true
		}
	case "scope":
		if fl&scopeClaimed != 0 {
			return d.ScopeString(), true
		}
	case "acr":
		if fl&acrClaimed != 0 {
			return d.ACR(), true
		}
	case "iss":
		if fl&issClaimed != 0 {
			return d.Issuer(), true
		}
	case "aud":
		if fl&audClaimed != 0 {
			// A claimed aud is a single string: read it without the copy
			// Audience makes.
			if i, ok := fl.audIndex(); ok {
				return d.ext.audiences[i], true
			}
			return d.ext.audience[0], true
		}
	case "exp":
		if fl&expClaimed != 0 {
			return json.Number(strconv.FormatInt(d.ExpiresAt().Unix(), 10)), true
		}
	case "nbf", "iat", "auth_time":
		for i, n := range relNames {
			if n == name && fl&(relClaimed<<i) != 0 {
				return json.Number(strconv.FormatInt(d.relTime(i).Unix(), 10)), true
			}
		}
	}
	return d.restMember(name)
}

// TopClaim is the claim called exactly name (no dotted path).
func (d *Decision) TopClaim(name string) (any, bool) { return d.top(name) }

// Claim looks a claim up by dotted path ("realm_access.roles"), descending
// into nested JSON objects. A claim name may itself contain dots (URIs as
// claim names are common, RFC 7519 §4.2): at each level the longest exact
// match wins.
func (d *Decision) Claim(path string) (any, bool) {
	if v, ok := d.top(path); ok {
		return v, true
	}
	head, path, found := strings.Cut(path, ".")
	if !found {
		return nil, false
	}
	cur, ok := d.top(head)
	for ok && path != "" {
		obj, isObj := cur.(map[string]any)
		if !isObj {
			return nil, false
		}
		if v, ok := obj[path]; ok {
			return v, true
		}
		head, path, found = strings.Cut(path, ".")
		if !found {
			return nil, false
		}
		cur, ok = obj[head]
	}
	return cur, ok
}

// Fields returns d's parts; the claims are decoded again, so the caller
// may keep and change everything it gets.
func (d *Decision) Fields() DecisionFields {
	f := DecisionFields{
		Subject: d.Subject(), ClientID: d.ClientID(), Scopes: d.Scopes(), Audience: d.Audience(),
		Issuer: d.Issuer(), ACR: d.ACR(), Source: d.Source(),
		ExpiresAt: d.ExpiresAt(), NotBefore: d.NotBefore(), IssuedAt: d.IssuedAt(), AuthTime: d.AuthTime(),
		Claims: d.restClaims(),
	}
	for _, name := range []string{"sub", "client_id", "azp", "scope", "acr", "iss", "aud", "exp", "nbf", "iat", "auth_time"} {
		if _, inRest := f.Claims[name]; inRest {
			continue
		}
		if v, ok := d.top(name); ok {
			if f.Claims == nil {
				f.Claims = make(map[string]any)
			}
			f.Claims[name] = v
		}
	}
	return f
}
