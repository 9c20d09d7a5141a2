package introspect_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tokengate/tokengate/introspect"
	"github.com/tokengate/tokengate/introspect/dpop"
)

func TestCheckBindingEnforcesConfirmationWhateverTheMode(t *testing.T) {
	jktBound := introspect.DecisionFields{Claims: map[string]any{"cnf": map[string]any{"jkt": "KEY"}}}.Build()
	certBound := introspect.DecisionFields{Claims: map[string]any{"cnf": map[string]any{"x5t#S256": "CERT"}}}.Build()
	unbound := introspect.DecisionFields{Claims: map[string]any{"sub": "a"}}.Build()
	badCnf := introspect.DecisionFields{Claims: map[string]any{"cnf": "KEY"}}.Build()
	tests := []struct {
		name string
		d    *introspect.Decision
		p    introspect.Presentation
		want introspect.Code // "" = accepted
	}{
		{"DPoP-bound token with a proof of its key", jktBound, introspect.Presentation{DPoP: true, ProofThumbprint: "KEY"}, ""},
		{"DPoP-bound token as Bearer", jktBound, introspect.Presentation{}, introspect.CodeInvalidToken},
		{"DPoP-bound token with another key's proof", jktBound, introspect.Presentation{DPoP: true, ProofThumbprint: "OTHER"}, dpop.CodeInvalidProof},
		{"DPoP-bound token with DPoP scheme but no proof", jktBound, introspect.Presentation{DPoP: true}, dpop.CodeInvalidProof},
		{"unbound token with the DPoP scheme", unbound, introspect.Presentation{DPoP: true, ProofThumbprint: "KEY"}, introspect.CodeInvalidToken},
		{"unbound token as Bearer", unbound, introspect.Presentation{}, ""},
		{"unbound token when DPoP is required", unbound, introspect.Presentation{RequireDPoP: true}, introspect.CodeInvalidToken},
		{"certificate-bound token with its certificate", certBound, introspect.Presentation{CertThumbprint: "CERT"}, ""},
		{"certificate-bound token with another certificate", certBound, introspect.Presentation{CertThumbprint: "OTHER"}, introspect.CodeInvalidToken},
		{"certificate-bound token without a certificate", certBound, introspect.Presentation{}, introspect.CodeInvalidToken},
		{"unreadable cnf", badCnf, introspect.Presentation{}, introspect.CodeInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := introspect.CheckBinding(tt.d, tt.p)
			var got introspect.Code
			if err != nil {
				got = err.Code
			}
			if got != tt.want {
				t.Errorf("CheckBinding = %v, want code %q", err, tt.want)
			}
		})
	}
}

func TestExtractorReportsTheDPoPScheme(t *testing.T) {
	for _, h := range []string{"DPoP abc.def", "dpop abc.def", "DPOP  abc.def"} {
		r := newRequest(h)
		tok, from, err := introspect.Extractor{}.Extract(r)
		if err != nil || tok != "abc.def" || from != introspect.TransportDPoP {
			t.Errorf("%q: got %q %v %v", h, tok, from, err)
		}
	}
	if _, _, err := (introspect.Extractor{}).Extract(newRequest("DPoP ")); err == nil {
		t.Error("empty DPoP credentials accepted")
	}
	r := newRequest("DPoP abc")
	if n := testing.AllocsPerRun(100, func() { _, _, _ = introspect.Extractor{}.Extract(r) }); n != 0 {
		t.Errorf("Extract of a DPoP header allocates %v times", n)
	}
}

func newRequest(authorization string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", authorization)
	return r
}
