package introspect

import (
	"encoding/json"

	"github.com/tokengate/tokengate/introspect/claims"
)

// verdictCodec stores verdicts in the shared Redis tier as JSON. A decision
// read back shares the configured issuer and audiences like one made here
// (a fleet promotes many decisions from Redis into memory), and its claims
// keep their exact numbers (Decision's own JSON reader uses json.Number):
// with plain float64s a 19-digit tenant id would lose its last digits, and
// a require_claim on it would hold here and fail for the same decision read
// from Redis.
type verdictCodec struct{ interned *claims.Interned }

func (verdictCodec) Marshal(v *Verdict) ([]byte, error) { return json.Marshal(v) }

func (c verdictCodec) Unmarshal(b []byte) (*Verdict, error) {
	var wire struct {
		Decision   json.RawMessage `json:"decision"`
		Rejection  *Error          `json:"rejection"`
		FreshUntil int64           `json:"fresh_until"`
	}
	if err := json.Unmarshal(b, &wire); err != nil {
		return nil, err
	}
	v := &Verdict{Rejection: wire.Rejection, FreshUntil: wire.FreshUntil}
	if len(wire.Decision) > 0 && string(wire.Decision) != "null" {
		d, err := claims.DecodeDecision(wire.Decision, c.interned)
		if err != nil {
			return nil, err
		}
		v.Decision = d
	}
	return v, nil
}
