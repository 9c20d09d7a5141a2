package asclient

import (
	"encoding/json"
	"testing"
	"time"
)

// acr and auth_time are read strictly from introspection answers: a string
// auth_time (even of digits) or a non-string acr is a broken answer, as exp
// is; null is absent.
func TestStepUpClaimsAreReadStrictly(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	at := now.Add(-time.Minute).Unix()
	jsonInt := func(n int64) string { b, _ := json.Marshal(n); return string(b) }
	t.Run("introspection", func(t *testing.T) {
		body := func(extra string) []byte {
			return []byte(`{"active":true,"client_id":"c","exp":` + jsonInt(now.Add(time.Hour).Unix()) + extra + `}`)
		}
		d, e := ParseIntrospectionResponse(body(`,"acr":"phr","auth_time":`+jsonInt(at)), now, 0, "")
		if e != nil || d.ACR() != "phr" || d.AuthTime().Unix() != at {
			t.Fatalf("got %+v %v, want acr phr and auth_time %d", d, e, at)
		}
		d, e = ParseIntrospectionResponse(body(`,"acr":null,"auth_time":null`), now, 0, "")
		if e != nil || d.ACR() != "" || !d.AuthTime().IsZero() {
			t.Fatalf("null members: %+v %v, want them read as absent", d, e)
		}
		for _, bad := range []string{`,"auth_time":"` + jsonInt(at) + `"`, `,"acr":1`, `,"acr":["phr"]`} {
			if _, e := ParseIntrospectionResponse(body(bad), now, 0, ""); e == nil || e.Reason != "bad_response" {
				t.Errorf("%s: %v, want bad_response", bad, e)
			}
		}
	})
}
