package claims

import (
	"fmt"
	"time"
)

// CheckTimes applies exp, nbf and iat with one leeway. It is the only time
// check: both token paths and the decision cache use it, so that "expired"
// means the same thing everywhere. A zero time means the claim is absent
// (whether that is allowed is the caller's business).
func (d *Decision) CheckTimes(now time.Time, leeway time.Duration) *Error {
	return CheckTimes(d.ExpiresAt(), d.NotBefore(), d.IssuedAt(), now, leeway)
}

// CheckTimes is Decision.CheckTimes for times not yet in a Decision.
func CheckTimes(exp, nbf, iat time.Time, now time.Time, leeway time.Duration) *Error {
	// RFC 7519 §4.1.4: the current time MUST be before exp (plus leeway).
	if !exp.IsZero() && !now.Before(exp.Add(leeway)) {
		e := InvalidToken("expired", "token expired", nil)
		e.Hint = fmt.Sprintf("expired at %s, now %s, leeway %s; if fresh tokens fail too, check the gateway's clock", exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), leeway)
		return e
	}
	// RFC 7519 §4.1.5.
	if !nbf.IsZero() && now.Add(leeway).Before(nbf) {
		e := InvalidToken("nbf", "token not yet valid", nil)
		e.Hint = fmt.Sprintf("nbf %s, now %s, leeway %s; check clock skew between the AS and the gateway", nbf.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), leeway)
		return e
	}
	// RFC 7519 §4.1.6 leaves iat's use to the application; a token issued
	// in the future is a clock problem or a forgery.
	if !iat.IsZero() && now.Add(leeway).Before(iat) {
		e := InvalidToken("iat", "token not yet valid: issued in the future", nil)
		e.Hint = fmt.Sprintf("iat %s, now %s, leeway %s; check clock skew between the AS and the gateway", iat.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), leeway)
		return e
	}
	return nil
}

// UsableFor is how long d may still be used at now: until exp plus leeway,
// or (no exp) without a bound of its own.
func (d *Decision) UsableFor(now time.Time, leeway time.Duration) time.Duration {
	if d.exp != noTime {
		// The warm path: no time.Time to build.
		return time.Duration(d.exp-now.UnixNano()) + leeway
	}
	exp := d.ExpiresAt()
	if exp.IsZero() {
		return 1<<63 - 1
	}
	return exp.Add(leeway).Sub(now)
}
