package introspect

import (
	"bytes"
	"encoding/json"
)

// verdictCodec stores verdicts in the shared Redis tier as JSON and reads
// numbers back as json.Number, as the verifier and the introspection reader
// produce them. With plain encoding/json a claim such as a 19-digit tenant
// id would come back as a float64 that has lost its last digits: a
// require_claim on it would hold for a decision made here and fail for the
// same decision read from Redis, and placeholders would differ as well.
type verdictCodec struct{}

func (verdictCodec) Marshal(v *Verdict) ([]byte, error) { return json.Marshal(v) }

func (verdictCodec) Unmarshal(b []byte) (*Verdict, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v *Verdict
	err := dec.Decode(&v)
	return v, err
}
