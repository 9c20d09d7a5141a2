package dpop

import (
	"context"
	"testing"
	"time"
)

// FuzzVerify: no input makes the proof parser panic, and nothing unsigned
// is ever accepted (the seeds include alg none and an empty signature).
func FuzzVerify(f *testing.F) {
	f.Add("eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6Im5vbmUifQ.eyJqdGkiOiJ4In0.", "tok")
	f.Add("a.b.c", "")
	f.Add("eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwiY3J2IjoiUC0yNTYiLCJ4IjoiIiwieSI6IiJ9fQ.e30.AAAA", "t")
	now := time.Unix(1_700_000_000, 0)
	v := &Verifier{Now: func() time.Time { return now }, Replay: NewMemoryReplay(16, func() time.Time { return now })}
	if err := v.Init(); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, proof, token string) {
		p, err := v.Verify(proof, Request{Method: "GET", URI: "https://api.example.com/", AccessToken: token})
		if err == nil {
			// Only a correctly signed proof can get here; a fuzzer cannot
			// forge one, so any success is a bug.
			t.Fatalf("accepted %q (%v)", proof, p)
		}
		_ = v.Consume(context.Background(), &Proof{ID: proof, IssuedAt: now})
	})
}
