package introspect

import (
	"errors"
	"strings"

	"github.com/tokengate/tokengate/introspect/jwt"
)

// What the doctor (introspect/diagnose) needs from this package beyond the
// Validator's accessors. It lives in one file on purpose: when the package
// is split, each piece moves next to what it reads (the JWT reader into the
// jwt package, the key-set questions next to RemoteKeySet) and the root
// keeps these names.

// UnverifiedJWT decodes the JOSE header and the claims of a JWT-shaped token
// WITHOUT verifying anything, with the segment decoder and the strict JSON
// reader the verifier itself uses: for display only (the doctor shows alg,
// kid, typ and iss), never to decide. header and claims are each nil when
// their segment does not decode to a JSON object; ok reports both decoded.
func UnverifiedJWT(token string) (header, claims map[string]any, ok bool) {
	if !jwt.LooksLike(token) {
		return nil, nil, false
	}
	header, _ = jwt.UnverifiedHeader(token)
	claims, _ = jwt.UnverifiedClaims(token)
	return header, claims, header != nil && claims != nil
}

// NewFailure says which part of New failed: New prefixes each of its errors
// with the setting at fault — "issuer" (discovery), "introspect" (the
// introspection client and the gateway's own credentials), "jwt" (the key
// set and the verifier) or "cache" — and wraps the cause. ok is false for
// an error not shaped that way. The doctor files a failure under the check
// it belongs to with it; TestDoctorSupportNewFailure pins the prefixes.
func NewFailure(err error) (setting string, cause error, ok bool) {
	cause = errors.Unwrap(err)
	if err == nil || cause == nil {
		return "", err, false
	}
	setting, ok = strings.CutSuffix(err.Error(), ": "+cause.Error())
	if !ok || setting == "" || strings.ContainsAny(setting, " :") {
		return "", err, false
	}
	return setting, cause, true
}

// KeySetURL is the URL a remote key set fetches: where a validator's keys
// come from when they are not read from a file (then it is ""). It reports
// the choice New made (jwks_url, else the discovered jwks_uri) instead of
// making it again.
func KeySetURL(ks KeySet) string {
	if r, ok := ks.(*jwt.RemoteKeySet); ok {
		return r.URL()
	}
	return ""
}

// KeySetError is why a remote key set holds no keys: the error of its last
// fetch. It is nil for other key sets and after a fetch that worked. (New
// with AllowStartWithoutKeys keeps going when the first fetch fails; this
// is how the failure can still be shown.)
func KeySetError(ks KeySet) error {
	if r, ok := ks.(*jwt.RemoteKeySet); ok {
		return r.LastError()
	}
	return nil
}
