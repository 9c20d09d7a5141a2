package dpop

import (
	"testing"
	"time"
)

// A nonce is good for its step and the next, then refused; gateways with
// the same secret accept each other's, others do not.
func TestNoncesExpireAfterTwoStepsAndNeedTheSecret(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	a := &Nonces{Secret: []byte("fleet"), Step: time.Minute, Now: clock}
	b := &Nonces{Secret: []byte("fleet"), Step: time.Minute, Now: clock}
	other := &Nonces{Secret: []byte("elsewhere"), Step: time.Minute, Now: clock}
	for _, n := range []*Nonces{a, b, other} {
		n.Init()
	}
	nonce := a.Current()
	if !a.Valid(nonce) || !b.Valid(nonce) {
		t.Fatal("a fresh nonce is refused by a gateway with the same secret")
	}
	if other.Valid(nonce) {
		t.Fatal("a gateway with another secret accepts the nonce")
	}
	now = now.Add(time.Minute)
	if !a.Valid(nonce) {
		t.Fatal("the previous step's nonce is refused")
	}
	now = now.Add(time.Minute)
	if a.Valid(nonce) {
		t.Fatal("a nonce two steps old is accepted")
	}
	if a.Valid("") {
		t.Fatal("an empty nonce is accepted")
	}
}
