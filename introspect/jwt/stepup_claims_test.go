package jwt

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// acr and auth_time are read strictly from JWTs (RFC 9068 §2.2.1): a string
// auth_time (even of digits) or a non-string acr is a malformed token.
func TestStepUpClaimsAreReadStrictly(t *testing.T) {
	at := jwtTestNow.Add(-time.Minute).Unix()
	jsonInt := func(n int64) string { b, _ := json.Marshal(n); return string(b) }
	t.Run("jwt", func(t *testing.T) {
		k := jwtKeys(t)
		v := jwtTestVerifier(t, jwtStandardSet(t), nil)
		sign := func(mod func(map[string]any)) string {
			return jwtSign(t, "ES256", k.EC1, jwtHeader("ES256", "ec-1"), jwtWith(mod))
		}
		d, err := v.Verify(context.Background(), sign(func(c map[string]any) { c["acr"] = "phr"; c["auth_time"] = at }))
		if err != nil || d.ACR() != "phr" || d.AuthTime().Unix() != at {
			t.Fatalf("got %+v %v, want acr phr and auth_time %d", d, err, at)
		}
		for name, mod := range map[string]func(map[string]any){
			"auth_time as a string": func(c map[string]any) { c["auth_time"] = jsonInt(at) },
			"acr as a number":       func(c map[string]any) { c["acr"] = 2 },
		} {
			t.Run(name, func(t *testing.T) {
				tok := sign(mod)
				d, err := v.Verify(context.Background(), tok)
				jwtWantRejection(t, tok, d, err, "malformed", "malformed token")
			})
		}
	})
}
