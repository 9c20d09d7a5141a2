package jwt

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/tokengate/tokengate/introspect/claims"
)

func jwtTestVerifier(t testing.TB, ks KeySet, mod func(*Config)) *Verifier {
	t.Helper()
	cfg := Config{
		Issuer:   jwtTestIssuer,
		Audience: []string{jwtTestAudience},
		Now:      func() time.Time { return jwtTestNow },
	}
	if mod != nil {
		mod(&cfg)
	}
	v, err := NewVerifier(ks, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func jwtWith(mod func(c map[string]any)) map[string]any {
	c := jwtClaims()
	mod(c)
	return c
}

func jwtHdrWith(alg, kid string, mod func(h map[string]any)) map[string]any {
	h := jwtHeader(alg, kid)
	mod(h)
	return h
}

// jwtWantRejection asserts err is an invalid_token *claims.Error with the reason
// and a description containing desc, and that the description never echoes
// the token.
func jwtWantRejection(t *testing.T, token string, d *claims.Decision, err error, reason, desc string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted (decision %+v), want rejection %q", d, reason)
	}
	if d != nil {
		t.Errorf("rejected but returned a decision")
	}
	var e *claims.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v is not an *claims.Error", err, err)
	}
	if e.Code != claims.CodeInvalidToken {
		t.Errorf("code = %s, want invalid_token (%v)", e.Code, err)
	}
	if e.Reason != reason {
		t.Errorf("reason = %q, want %q (%v)", e.Reason, reason, err)
	}
	if !strings.Contains(e.Description, desc) {
		t.Errorf("description = %q, want it to contain %q", e.Description, desc)
	}
	for _, seg := range strings.Split(token, ".") {
		if len(seg) > 8 && (strings.Contains(e.Description, seg) || strings.Contains(e.Hint, seg) || strings.Contains(err.Error(), seg)) {
			t.Errorf("error echoes a token segment: %v / hint %q", err, e.Hint)
		}
	}
}

func TestJWTVerifierAcceptsGoodTokens(t *testing.T) {
	k := jwtKeys(t)
	v := jwtTestVerifier(t, jwtStandardSet(t), nil)
	tests := []struct {
		name  string
		token string
	}{
		{"an RS256 token signed by the kid's RSA key is accepted", jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtClaims())},
		{"an ES256 token signed by the kid's P-256 key is accepted", jwtSign(t, "ES256", k.EC1, jwtHeader("ES256", "ec-1"), jwtClaims())},
		{"an EdDSA token signed by the kid's Ed25519 key is accepted", jwtSign(t, "EdDSA", k.Ed1, jwtHeader("EdDSA", "ed-1"), jwtClaims())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := v.Verify(context.Background(), tt.token)
			if err != nil {
				t.Fatal(err)
			}
			want := claims.DecisionFields{
				Subject:   "user-42",
				ClientID:  "client-7",
				Scopes:    []string{"read", "write"},
				Audience:  []string{jwtTestAudience},
				Issuer:    jwtTestIssuer,
				ExpiresAt: jwtTestNow.Add(5 * time.Minute),
				IssuedAt:  jwtTestNow.Add(-time.Minute),
				Source:    "jwt",
			}
			got := d.Fields()
			claims := got.Claims
			got.Claims = nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decision\n got %+v\nwant %+v", d, want)
			}
			// Numbers are json.Number, documented on Verify's Decision.
			if got, ok := claims["exp"].(json.Number); !ok || got.String() != "1748779500" {
				t.Errorf("claims[exp] = %#v, want json.Number 1748779500", claims["exp"])
			}
			if claims["jti"] != "jti-1" || len(claims) != 8 {
				t.Errorf("claims = %v, want all 8 claims", claims)
			}
		})
	}
}

func TestJWTVerifierDecisionFields(t *testing.T) {
	k := jwtKeys(t)
	v := jwtTestVerifier(t, jwtStandardSet(t), nil)
	tests := []struct {
		name       string
		claims     map[string]any
		wantScopes []string
		wantClient string
		wantAud    []string
	}{
		{"a scope string becomes the scope list", jwtWith(func(c map[string]any) { c["scope"] = "a  b c" }), []string{"a", "b", "c"}, "client-7", []string{jwtTestAudience}},
		{"an scp array becomes the scope list", jwtWith(func(c map[string]any) { delete(c, "scope"); c["scp"] = []string{"a", "b"} }), []string{"a", "b"}, "client-7", []string{jwtTestAudience}},
		{"an scp string becomes the scope list", jwtWith(func(c map[string]any) { delete(c, "scope"); c["scp"] = "a b" }), []string{"a", "b"}, "client-7", []string{jwtTestAudience}},
		{"scope wins over scp when both are present", jwtWith(func(c map[string]any) { c["scp"] = []string{"x"} }), []string{"read", "write"}, "client-7", []string{jwtTestAudience}},
		{"azp stands in for a missing client_id", jwtWith(func(c map[string]any) { delete(c, "client_id"); c["azp"] = "spa" }), []string{"read", "write"}, "spa", []string{jwtTestAudience}},
		{"an aud array containing our audience is accepted", jwtWith(func(c map[string]any) { c["aud"] = []string{"other", jwtTestAudience} }), []string{"read", "write"}, "client-7", []string{"other", jwtTestAudience}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := v.Verify(context.Background(), jwtSign(t, "ES256", k.EC1, jwtHeader("ES256", "ec-1"), tt.claims))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(d.Scopes(), tt.wantScopes) || d.ClientID() != tt.wantClient || !reflect.DeepEqual(d.Audience(), tt.wantAud) {
				t.Errorf("scopes %q client %q aud %q; want %q %q %q", d.Scopes(), d.ClientID(), d.Audience(), tt.wantScopes, tt.wantClient, tt.wantAud)
			}
		})
	}
}

func TestJWTVerifierRejections(t *testing.T) {
	k := jwtKeys(t)
	ks := jwtStandardSet(t)
	der, err := x509.MarshalPKIXPublicKey(&k.RSA1.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaPubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	good := jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtClaims())
	parts := strings.Split(good, ".")
	leeway := 30 * time.Second
	exp := jwtTestNow.Add(5 * time.Minute)

	tests := []struct {
		name   string
		cfg    func(*Config)
		token  string
		reason string
		desc   string
	}{
		{
			name:   "alg none is rejected",
			token:  jwtSign(t, "none", nil, jwtHdrWith("none", "rsa-1", func(map[string]any) {}), jwtClaims()),
			reason: "alg_none", desc: "algorithm not allowed",
		},
		{
			name:   "alg NONE in another case is rejected too",
			token:  jwtSign(t, "none", nil, jwtHeader("NoNe", ""), jwtClaims()),
			reason: "alg_none", desc: "algorithm not allowed",
		},
		{
			name:   "HS256 with the RSA public key (PEM) as the secret is rejected",
			token:  jwtSign(t, "HS256", rsaPubPEM, jwtHeader("HS256", "rsa-1"), jwtClaims()),
			reason: "alg", desc: "algorithm not allowed",
		},
		{
			name:   "HS256 with the RSA modulus as the secret and no kid is rejected",
			token:  jwtSign(t, "HS256", k.RSA1.N.Bytes(), jwtHeader("HS256", ""), jwtClaims()),
			reason: "alg", desc: "algorithm not allowed",
		},
		{
			name:   "an alg outside the explicit allowlist is rejected before key lookup",
			cfg:    func(c *Config) { c.Algorithms = []jwa.SignatureAlgorithm{jwa.ES256} },
			token:  good,
			reason: "alg", desc: "algorithm not allowed",
		},
		{
			name:   "ES256 claimed with the kid of an RSA key is rejected (key type must match the alg family)",
			token:  jwtSign(t, "ES256", k.EC1, jwtHeader("ES256", "rsa-1"), jwtClaims()),
			reason: "unknown_key", desc: "unknown signing key",
		},
		{
			name:   "PS256 signed by an RSA key whose own alg is RS256 is rejected even when PS256 is allowed",
			cfg:    func(c *Config) { c.Algorithms = []jwa.SignatureAlgorithm{jwa.RS256, jwa.PS256} },
			token:  jwtSign(t, "PS256", k.RSA1, jwtHeader("PS256", "rsa-1"), jwtClaims()),
			reason: "unknown_key", desc: "unknown signing key",
		},
		{
			name:   "a kid not in the set is rejected without trying other keys",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "nope"), jwtClaims()),
			reason: "unknown_key", desc: "unknown signing key",
		},
		{
			name:   "a token signed by another key under a known kid has a bad signature",
			token:  jwtSign(t, "RS256", k.RSA2, jwtHeader("RS256", "rsa-1"), jwtClaims()),
			reason: "signature", desc: "bad signature",
		},
		{
			name:   "a tampered payload has a bad signature",
			token:  parts[0] + "." + jwtB64JSON(t, jwtWith(func(c map[string]any) { c["scope"] = "admin" })) + "." + parts[2],
			reason: "signature", desc: "bad signature",
		},
		{
			name:   "a token expired by 1s beyond the leeway is rejected",
			cfg:    func(c *Config) { c.Now = func() time.Time { return exp.Add(leeway + time.Second) } },
			token:  good,
			reason: "expired", desc: "token expired",
		},
		{
			name:   "a token expired exactly at the end of the leeway is rejected",
			cfg:    func(c *Config) { c.Now = func() time.Time { return exp.Add(leeway) } },
			token:  good,
			reason: "expired", desc: "token expired",
		},
		{
			name:   "a token whose nbf is beyond now plus leeway is not yet valid",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtWith(func(c map[string]any) { c["nbf"] = jwtTestNow.Add(time.Minute).Unix() })),
			reason: "nbf", desc: "token not yet valid",
		},
		{
			name:   "a token issued in the future beyond the leeway is rejected",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtWith(func(c map[string]any) { c["iat"] = jwtTestNow.Add(time.Minute).Unix() })),
			reason: "iat", desc: "token not yet valid",
		},
		{
			name:   "a token without aud is rejected",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtWith(func(c map[string]any) { delete(c, "aud") })),
			reason: "aud_missing", desc: "audience mismatch",
		},
		{
			name:   "a token with an empty aud array is rejected",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtWith(func(c map[string]any) { c["aud"] = []string{} })),
			reason: "aud_missing", desc: "audience mismatch",
		},
		{
			name:   "a token for another API is rejected",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtWith(func(c map[string]any) { c["aud"] = []string{"https://other.example.com"} })),
			reason: "aud", desc: "audience mismatch",
		},
		{
			name:   "an aud that is a number is malformed",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtWith(func(c map[string]any) { c["aud"] = 5 })),
			reason: "malformed", desc: "aud claim",
		},
		{
			name:   "a token from another issuer is rejected",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtWith(func(c map[string]any) { c["iss"] = "https://as.example.com" })),
			reason: "iss", desc: "issuer mismatch",
		},
		{
			name:   "a token without iss is rejected",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtWith(func(c map[string]any) { delete(c, "iss") })),
			reason: "iss", desc: "issuer mismatch",
		},
		{
			name:   "typ JWT is not an access token type by default",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHdrWith("RS256", "rsa-1", func(h map[string]any) { h["typ"] = "JWT" }), jwtClaims()),
			reason: "typ", desc: "token type not accepted",
		},
		{
			name:   "a token without typ is rejected by default",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHdrWith("RS256", "rsa-1", func(h map[string]any) { delete(h, "typ") }), jwtClaims()),
			reason: "typ", desc: "token type not accepted",
		},
		{
			name:   "a typ that is not a string is malformed",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHdrWith("RS256", "rsa-1", func(h map[string]any) { h["typ"] = 1 }), jwtClaims()),
			reason: "malformed", desc: "typ header",
		},
		{
			name:   "exp as a string is malformed, as authorization servers' own libraries treat it",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtWith(func(c map[string]any) { c["exp"] = "1748779500" })),
			reason: "malformed", desc: "exp claim must be a JSON number",
		},
		{
			name:   "iat as a string is malformed",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtWith(func(c map[string]any) { c["iat"] = "1748779140" })),
			reason: "malformed", desc: "iat claim must be a JSON number",
		},
		{
			name:   "nbf as a string is malformed",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtWith(func(c map[string]any) { c["nbf"] = "0" })),
			reason: "malformed", desc: "nbf claim must be a JSON number",
		},
		{
			name:   "a token without exp is rejected",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtWith(func(c map[string]any) { delete(c, "exp") })),
			reason: "exp_missing", desc: "missing exp",
		},
		{
			name:   "an absurd exp is malformed",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtWith(func(c map[string]any) { c["exp"] = 1e300 })),
			reason: "malformed", desc: "out of range",
		},
		{
			name:   "a crit header is rejected",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHdrWith("RS256", "rsa-1", func(h map[string]any) { h["crit"] = []string{"exp"}; h["exp"] = 1 }), jwtClaims()),
			reason: "crit", desc: "unsupported critical header",
		},
		{
			name:   "an empty crit header is rejected too",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHdrWith("RS256", "rsa-1", func(h map[string]any) { h["crit"] = []string{} }), jwtClaims()),
			reason: "crit", desc: "unsupported critical header",
		},
		{
			name:   "b64 false is rejected",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHdrWith("RS256", "rsa-1", func(h map[string]any) { h["b64"] = false }), jwtClaims()),
			reason: "b64", desc: "unsupported critical header",
		},
		{
			name:   "b64 as a string is rejected",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHdrWith("RS256", "rsa-1", func(h map[string]any) { h["b64"] = "true" }), jwtClaims()),
			reason: "b64", desc: "unsupported critical header",
		},
		{
			name:   "a missing alg is rejected",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHdrWith("RS256", "rsa-1", func(h map[string]any) { delete(h, "alg") }), jwtClaims()),
			reason: "alg_missing", desc: "missing alg",
		},
		{
			name:   "an oversize token is rejected before parsing",
			cfg:    func(c *Config) { c.MaxTokenBytes = 100 },
			token:  good,
			reason: "size", desc: "longer than 100 bytes",
		},
		{
			name:   "a token over the default 8 KiB is rejected",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtWith(func(c map[string]any) { c["pad"] = strings.Repeat("x", 8<<10) })),
			reason: "size", desc: "longer than 8192 bytes",
		},
		{
			name:   "a duplicate claim is malformed",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), `{"iss":"`+jwtTestIssuer+`","aud":"`+jwtTestAudience+`","exp":1748779500,"exp":9999999999}`),
			reason: "malformed", desc: "claims are not a valid JSON object",
		},
		{
			name:   "a duplicate header member is malformed",
			token:  jwtSign(t, "RS256", k.RSA1, `{"alg":"RS256","kid":"rsa-1","typ":"at+jwt","alg":"none"}`, jwtClaims()),
			reason: "malformed", desc: "header is not a valid JSON object",
		},
		{
			name:   "claims that are not an object are malformed",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), `["iss"]`),
			reason: "malformed", desc: "claims are not a valid JSON object",
		},
		{
			name:   "claims with trailing data are malformed",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), `{"exp":1}{}`),
			reason: "malformed", desc: "claims are not a valid JSON object",
		},
		{
			name:   "claims with invalid UTF-8 are malformed",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), []byte("{\"sub\":\"\xff\"}")),
			reason: "malformed", desc: "claims are not a valid JSON object",
		},
		{
			name:   "a signature with non-canonical base64 (padding) is malformed",
			token:  good + "==",
			reason: "malformed", desc: "signature is not base64url",
		},
		{
			name:   "a payload in standard base64 is malformed",
			token:  parts[0] + "." + strings.NewReplacer("-", "+", "_", "/").Replace(parts[1]) + "+/." + parts[2],
			reason: "malformed", desc: "payload is not base64url",
		},
		{
			name:   "a JWE (five parts) is not supported",
			token:  "a.b.c.d.e",
			reason: "jwe", desc: "encrypted JWTs",
		},
		{
			name:   "two parts are malformed",
			token:  parts[0] + "." + parts[1],
			reason: "malformed", desc: "not a JWS compact serialization",
		},
		{
			name:   "an empty signature is malformed",
			token:  parts[0] + "." + parts[1] + ".",
			reason: "malformed", desc: "empty payload or signature",
		},
		{
			name:   "a JSON-serialized JWS is malformed",
			token:  `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`,
			reason: "malformed", desc: "not a JWS compact serialization",
		},
		{
			name:   "an empty kid is malformed",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHdrWith("RS256", "", func(h map[string]any) { h["kid"] = "" }), jwtClaims()),
			reason: "malformed", desc: "kid header",
		},
		{
			name:   "a sub that is not a string is malformed",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtWith(func(c map[string]any) { c["sub"] = 42 })),
			reason: "malformed", desc: "sub claim",
		},
		{
			name:   "an scp array with a number is malformed",
			token:  jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtWith(func(c map[string]any) { delete(c, "scope"); c["scp"] = []any{"a", 1} })),
			reason: "malformed", desc: "scp claim",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := jwtTestVerifier(t, ks, tt.cfg)
			d, err := v.Verify(context.Background(), tt.token)
			jwtWantRejection(t, tt.token, d, err, tt.reason, tt.desc)
		})
	}
}

func TestJWTVerifierLeewayAndTypes(t *testing.T) {
	k := jwtKeys(t)
	ks := jwtStandardSet(t)
	exp := jwtTestNow.Add(5 * time.Minute)
	noTyp := jwtSign(t, "RS256", k.RSA1, jwtHdrWith("RS256", "rsa-1", func(h map[string]any) { delete(h, "typ") }), jwtClaims())
	typJWT := jwtSign(t, "RS256", k.RSA1, jwtHdrWith("RS256", "rsa-1", func(h map[string]any) { h["typ"] = "JWT" }), jwtClaims())
	tests := []struct {
		name  string
		cfg   func(*Config)
		token string
	}{
		{
			name:  "a token expired by less than the leeway is accepted",
			cfg:   func(c *Config) { c.Now = func() time.Time { return exp.Add(29 * time.Second) } },
			token: jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtClaims()),
		},
		{
			name:  "a token whose nbf is within the leeway is accepted",
			token: jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtWith(func(c map[string]any) { c["nbf"] = jwtTestNow.Add(20 * time.Second).Unix() })),
		},
		{
			name:  "typ application/at+jwt in upper case is accepted",
			token: jwtSign(t, "RS256", k.RSA1, jwtHdrWith("RS256", "rsa-1", func(h map[string]any) { h["typ"] = "Application/AT+JWT" }), jwtClaims()),
		},
		{
			name:  "a token without typ is accepted when Types contains the empty string",
			cfg:   func(c *Config) { c.Types = []string{"at+jwt", ""} },
			token: noTyp,
		},
		{
			name:  "typ JWT is accepted when Types contains JWT",
			cfg:   func(c *Config) { c.Types = []string{"at+jwt", "jwt"} },
			token: typJWT,
		},
		{
			name:  "an RSA key without alg verifies RS256 under the default allowlist",
			token: jwtSign(t, "RS256", k.RSA2, jwtHeader("RS256", "noalg"), jwtClaims()),
		},
		{
			name:  "an RSA key without alg verifies PS256 when PS256 is allowed explicitly",
			cfg:   func(c *Config) { c.Algorithms = []jwa.SignatureAlgorithm{jwa.PS256} },
			token: jwtSign(t, "PS256", k.RSA2, jwtHeader("PS256", "noalg"), jwtClaims()),
		},
		{
			name:  "a fractional exp is accepted",
			token: jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtWith(func(c map[string]any) { c["exp"] = float64(exp.Unix()) + 0.5 })),
		},
	}
	noAlgSet, err := NewStaticKeySet(jwtSet(t,
		jwtPublicJWK(t, k.RSA1, "rsa-1", jwa.RS256),
		jwtPublicJWK(t, k.RSA2, "noalg", ""),
	))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var set KeySet = ks
			if strings.Contains(tt.name, "without alg") {
				set = noAlgSet
			}
			if _, err := jwtTestVerifier(t, set, tt.cfg).Verify(context.Background(), tt.token); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("an RSA key without alg does not verify PS256 under the default allowlist", func(t *testing.T) {
		tok := jwtSign(t, "PS256", k.RSA2, jwtHeader("PS256", "noalg"), jwtClaims())
		d, err := jwtTestVerifier(t, noAlgSet, nil).Verify(context.Background(), tok)
		jwtWantRejection(t, tok, d, err, "alg", "algorithm not allowed")
	})
	t.Run("the rejection of a missing typ says so", func(t *testing.T) {
		d, err := jwtTestVerifier(t, ks, nil).Verify(context.Background(), noTyp)
		jwtWantRejection(t, noTyp, d, err, "typ", "no typ header")
		if e := claims.AsError(err); !strings.Contains(e.Hint, "typ") {
			t.Errorf("hint %q does not tell the operator about typ", e.Hint)
		}
	})
}

func TestJWTVerifierKeySelectionWithoutKid(t *testing.T) {
	k := jwtKeys(t)
	oneRSA, err := NewStaticKeySet(jwtSet(t,
		jwtPublicJWK(t, k.RSA1, "", jwa.RS256),
		jwtPublicJWK(t, k.EC1, "", jwa.ES256),
	))
	if err != nil {
		t.Fatal(err)
	}
	twoRSA, err := NewStaticKeySet(jwtSet(t,
		jwtPublicJWK(t, k.RSA1, "a", jwa.RS256),
		jwtPublicJWK(t, k.RSA2, "b", jwa.RS256),
	))
	if err != nil {
		t.Fatal(err)
	}
	tok := jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", ""), jwtClaims())

	t.Run("a token without kid is accepted when exactly one key fits its alg", func(t *testing.T) {
		if _, err := jwtTestVerifier(t, oneRSA, nil).Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a token without kid is rejected when two keys fit its alg", func(t *testing.T) {
		d, err := jwtTestVerifier(t, twoRSA, nil).Verify(context.Background(), tok)
		jwtWantRejection(t, tok, d, err, "ambiguous_key", "unknown signing key")
	})
}

func TestNewJWTVerifierRefusesBadConfig(t *testing.T) {
	ks := jwtStandardSet(t)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"HS256 in the allowlist is refused", Config{Issuer: "i", Audience: []string{"a"}, Algorithms: []jwa.SignatureAlgorithm{jwa.RS256, jwa.HS256}}, "never accepted"},
		{"none in the allowlist is refused", Config{Issuer: "i", Audience: []string{"a"}, Algorithms: []jwa.SignatureAlgorithm{jwa.NoSignature}}, `"none" is never accepted`},
		{"an unknown algorithm is refused", Config{Issuer: "i", Audience: []string{"a"}, Algorithms: []jwa.SignatureAlgorithm{"RSA-OAEP"}}, "not supported"},
		{"a missing issuer is refused", Config{Audience: []string{"a"}}, "issuer is required"},
		{"a missing audience is refused", Config{Issuer: "i"}, "audience is required"},
		{"an empty audience value is refused", Config{Issuer: "i", Audience: []string{""}}, "audience is required"},
		{"a negative leeway is refused", Config{Issuer: "i", Audience: []string{"a"}, Leeway: -time.Second}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewVerifier(ks, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := NewVerifier(nil, Config{Issuer: "i", Audience: []string{"a"}}); err == nil {
		t.Error("a nil key set was accepted")
	}
}

func TestLooksLikeJWT(t *testing.T) {
	k := jwtKeys(t)
	good := jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtClaims())
	parts := strings.Split(good, ".")
	tests := []struct {
		name  string
		token string
		want  bool
	}{
		{"a signed JWT looks like a JWT", good, true},
		{"an opaque token does not", "2YotnFZFEjr1zCsicMWpAA", false},
		{"a JWE with five parts does not", parts[0] + ".a.b.c.d", false},
		{"an unsigned JWT with an empty signature does not", parts[0] + "." + parts[1] + ".", false},
		{"two parts do not", parts[0] + "." + parts[1], false},
		{"a header that is not base64url does not", "a+b." + parts[1] + "." + parts[2], false},
		{"a header without alg does not", jwtB64JSON(t, `{"typ":"at+jwt"}`) + ".e30.c2ln", false},
		{"a header that is a JSON array does not", jwtB64JSON(t, `["alg"]`) + ".e30.c2ln", false},
		{"a header with alg ALG in another case does not", jwtB64JSON(t, `{"ALG":"RS256"}`) + ".e30.c2ln", false},
		{"a payload with a non-base64url character does not", parts[0] + ".e30=.c2ln", false},
		{"three dots-only segments do not", "..", false},
		{"the empty string does not", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := LooksLike(tt.token); got != tt.want {
				t.Errorf("LooksLike = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestJWTVerifierErrorsAreInvalidTokenNeverUnavailableForStaticKeys(t *testing.T) {
	// A static key set cannot be "unreachable": whatever the token, the
	// error is the caller's (invalid_token), never a 503.
	v := jwtTestVerifier(t, jwtStandardSet(t), nil)
	for _, tok := range []string{"", ".", "..", "a.b.c", "e30.e30.e30", strings.Repeat("A", 9000)} {
		_, err := v.Verify(context.Background(), tok)
		if !errors.Is(err, claims.ErrInvalidToken) {
			t.Errorf("Verify(%q) = %v, want invalid_token", claims.Shorten(tok), err)
		}
	}
}

// jwtBrokenKeySet hands back the same key whatever is asked, like a
// careless third-party KeySet would.
type jwtBrokenKeySet struct{ key jwk.Key }

func (b jwtBrokenKeySet) Key(context.Context, string, jwa.SignatureAlgorithm) (jwk.Key, error) {
	return b.key, nil
}
func (b jwtBrokenKeySet) Algorithms() []jwa.SignatureAlgorithm { return nil }

func TestJWTVerifierDoesNotTrustTheKeySet(t *testing.T) {
	k := jwtKeys(t)
	ecTok := jwtSign(t, "ES256", k.EC1, jwtHeader("ES256", "ec-1"), jwtClaims())
	encKey := jwtPublicJWK(t, k.EC1, "ec-1", jwa.ES256)
	_ = encKey.Set(jwk.KeyUsageKey, "enc")
	tests := []struct {
		name string
		key  jwk.Key
	}{
		{"an RSA key handed back for an ES256 token is refused", jwtPublicJWK(t, k.RSA1, "ec-1", "")},
		{"an encryption key handed back for an ES256 token is refused", encKey},
		{"a P-256 key declaring ES384 is refused for an ES256 token", jwtPublicJWK(t, k.EC1, "ec-1", jwa.ES384)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := jwtTestVerifier(t, jwtBrokenKeySet{tt.key}, nil).Verify(context.Background(), ecTok)
			jwtWantRejection(t, ecTok, d, err, "alg_key_mismatch", "algorithm not allowed")
		})
	}
}

func TestJWTVerifierDuplicateKid(t *testing.T) {
	k := jwtKeys(t)
	t.Run("a kid shared by two keys of different types selects by alg", func(t *testing.T) {
		ks, err := NewStaticKeySet(jwtSet(t, jwtPublicJWK(t, k.RSA1, "same", ""), jwtPublicJWK(t, k.EC1, "same", "")))
		if err != nil {
			t.Fatal(err)
		}
		tok := jwtSign(t, "ES256", k.EC1, jwtHeader("ES256", "same"), jwtClaims())
		if _, err := jwtTestVerifier(t, ks, nil).Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a kid shared by two RSA keys is ambiguous and rejected", func(t *testing.T) {
		ks, err := NewStaticKeySet(jwtSet(t, jwtPublicJWK(t, k.RSA1, "same", ""), jwtPublicJWK(t, k.RSA2, "same", "")))
		if err != nil {
			t.Fatal(err)
		}
		tok := jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "same"), jwtClaims())
		d, err := jwtTestVerifier(t, ks, nil).Verify(context.Background(), tok)
		jwtWantRejection(t, tok, d, err, "ambiguous_key", "unknown signing key")
	})
	t.Run("an EC key that declares alg RS256 is skipped at load and reported", func(t *testing.T) {
		ks, err := NewStaticKeySet(jwtSet(t, jwtPublicJWK(t, k.RSA1, "r", jwa.RS256), jwtPublicJWK(t, k.EC1, "liar", jwa.RS256)))
		if err != nil {
			t.Fatal(err)
		}
		if ks.Len() != 1 || len(ks.Skipped()) != 1 || !strings.Contains(ks.Skipped()[0], `kid "liar"`) {
			t.Fatalf("Len %d Skipped %q", ks.Len(), ks.Skipped())
		}
	})
}
