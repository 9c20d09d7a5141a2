// Package benchjwt mints JWT access tokens quickly and checks their
// signatures with nothing but the standard library: the floor that
// tokengate's cold path is measured against. The Go benchmarks
// (caddymodule/limits_bench_test.go) and bench/tools (bench/run.sh's
// stdlib figure) share it, so both put the same floor beside the same
// kind of token.
package benchjwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// Algs are the algorithms measured: RS256 (RSA-2048), ES256 (P-256) and
// EdDSA (Ed25519).
var Algs = []string{"RS256", "ES256", "EdDSA"}

var b64 = base64.RawURLEncoding

// Key signs tokens with one algorithm and key id.
type Key struct {
	Alg, Kid string
	priv     crypto.Signer
	header   string // the encoded protected header and its dot
}

// NewKey makes a new key for alg (one of Algs).
func NewKey(alg, kid string) (*Key, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case "RS256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		err = fmt.Errorf("alg %q: want one of %v", alg, Algs)
	}
	if err != nil {
		return nil, err
	}
	return KeyOf(alg, kid, priv), nil
}

// KeyOf is a Key for an existing private key.
func KeyOf(alg, kid string, priv crypto.Signer) *Key {
	h, _ := json.Marshal(map[string]string{"alg": alg, "typ": "at+jwt", "kid": kid})
	return &Key{Alg: alg, Kid: kid, priv: priv, header: b64.EncodeToString(h) + "."}
}

// Public is the public key.
func (k *Key) Public() crypto.PublicKey { return k.priv.Public() }

// JWKS is the public key as a JWK set (kid, alg, use sig).
func (k *Key) JWKS() ([]byte, error) {
	pub, err := jwk.FromRaw(k.Public())
	if err != nil {
		return nil, err
	}
	for _, kv := range [][2]any{{jwk.KeyIDKey, k.Kid}, {jwk.AlgorithmKey, jwa.SignatureAlgorithm(k.Alg)}, {jwk.KeyUsageKey, "sig"}} {
		if err := pub.Set(kv[0].(string), kv[1]); err != nil {
			return nil, err
		}
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, err
	}
	return json.Marshal(set)
}

// Sign makes a compact JWS of the claims (a JSON object).
func (k *Key) Sign(claims []byte) (string, error) {
	input := k.header + b64.EncodeToString(claims)
	var sig []byte
	var err error
	switch p := k.priv.(type) {
	case *rsa.PrivateKey:
		sum := sha256.Sum256([]byte(input))
		sig, err = rsa.SignPKCS1v15(nil, p, crypto.SHA256, sum[:])
	case *ecdsa.PrivateKey:
		sum := sha256.Sum256([]byte(input))
		var r, s *big.Int
		if r, s, err = ecdsa.Sign(rand.Reader, p, sum[:]); err == nil {
			sig = make([]byte, 64)
			r.FillBytes(sig[:32])
			s.FillBytes(sig[32:])
		}
	case ed25519.PrivateKey:
		sig = ed25519.Sign(p, []byte(input))
	default:
		err = fmt.Errorf("key type %T", k.priv)
	}
	if err != nil {
		return "", err
	}
	return input + "." + b64.EncodeToString(sig), nil
}

// MintN signs n tokens, token i with claims(i), on every CPU.
func (k *Key) MintN(n int, claims func(i int) []byte) ([]string, error) {
	toks := make([]string, n)
	err := Parallel(n, func(i int) (err error) {
		toks[i], err = k.Sign(claims(i))
		return err
	})
	return toks, err
}

// Parallel calls f for every i in [0, n), spread over GOMAXPROCS
// goroutines; a goroutine stops at its first error.
func Parallel(n int, f func(i int) error) error {
	workers := runtime.GOMAXPROCS(0)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n && errs[w] == nil; i += workers {
				errs[w] = f(i)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Signed is a token split for the floor: the signing input and the
// decoded signature.
type Signed struct{ Input, Sig []byte }

// Split splits a compact JWS.
func Split(token string) (Signed, error) {
	dot := strings.LastIndexByte(token, '.')
	if dot < 0 || strings.Count(token[:dot], ".") != 1 {
		return Signed{}, errors.New("not a compact JWS")
	}
	sig, err := b64.DecodeString(token[dot+1:])
	if err != nil {
		return Signed{}, err
	}
	return Signed{Input: []byte(token[:dot]), Sig: sig}, nil
}

// SplitAll splits every token.
func SplitAll(toks []string) ([]Signed, error) {
	out := make([]Signed, len(toks))
	for i, t := range toks {
		var err error
		if out[i], err = Split(t); err != nil {
			return nil, fmt.Errorf("token %d: %w", i, err)
		}
	}
	return out, nil
}

// Verify is the floor: SHA-256 of the signing input (RS256, ES256) and the
// standard library's check of the signature with an already-parsed public
// key — rsa.VerifyPKCS1v15, ecdsa.Verify of the raw r||s, ed25519.Verify.
func Verify(pub crypto.PublicKey, s Signed) bool {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		sum := sha256.Sum256(s.Input)
		return rsa.VerifyPKCS1v15(p, crypto.SHA256, sum[:], s.Sig) == nil
	case *ecdsa.PublicKey:
		if len(s.Sig) != 64 {
			return false
		}
		sum := sha256.Sum256(s.Input)
		return ecdsa.Verify(p, sum[:], new(big.Int).SetBytes(s.Sig[:32]), new(big.Int).SetBytes(s.Sig[32:]))
	case ed25519.PublicKey:
		return ed25519.Verify(p, s.Input, s.Sig)
	}
	return false
}

// TenClaims is the payload of a typical RFC 9068 access token with ten
// claims (iss, sub, aud, client_id, scope with four scopes, iat, nbf, exp,
// auth_time, jti); i makes sub, client_id and jti unique.
func TenClaims(i int, iss, aud string, now time.Time) []byte {
	return fmt.Appendf(nil, `{"iss":%q,"sub":"f81d4fae-7dec-11d0-a765-%012d","aud":%q,"client_id":"orders-app-%d",`+
		`"scope":"openid orders:read orders:write profile","iat":%d,"nbf":%d,"exp":%d,"auth_time":%d,"jti":"%032x"}`,
		iss, i, aud, i%1000, now.Unix(), now.Unix(), now.Add(time.Hour).Unix(), now.Add(-time.Minute).Unix(), i)
}

// NestedClaims is a large Keycloak-style access token, about 2 KB of JSON:
// the ten claims of TenClaims (scope "read" first) and nested ones —
// realm_access.roles, resource_access with three clients' roles, groups,
// an address, authorization.permissions, and the usual profile strings.
func NestedClaims(i int, iss, aud string, now time.Time) []byte {
	return fmt.Appendf(nil, `{"exp":%d,"iat":%d,"nbf":%d,"auth_time":%d,"jti":"%032x","iss":%q,"aud":[%q,"account"],`+
		`"sub":"f81d4fae-7dec-11d0-a765-%012d","typ":"Bearer","azp":"orders-app-%d","client_id":"orders-app-%d",`+
		`"sid":"%08x-3c4d-4e5f-8a9b-%012x","session_state":"%08x-9a8b-4c7d-8e6f-%012x","acr":"1",`+
		`"allowed-origins":["https://orders.example.com","https://admin.example.com"],`+
		`"realm_access":{"roles":["default-roles-acme","offline_access","uma_authorization","orders-user","orders-admin","reports-viewer","billing-viewer","support-agent"]},`+
		`"resource_access":{"orders-api":{"roles":["orders:read","orders:write","orders:refund","orders:export"]},`+
		`"reports-api":{"roles":["reports:read","reports:schedule"]},"account":{"roles":["manage-account","manage-account-links","view-profile"]}},`+
		`"scope":"read openid profile email orders:read orders:write reports:read",`+
		`"groups":["/acme/employees","/acme/employees/sales","/acme/employees/sales/emea","/acme/projects/orders-revamp","/acme/projects/q3-billing"],`+
		`"email_verified":true,"name":"Alexandra Kowalczyk-Johnson","preferred_username":"akowalczyk%d",`+
		`"given_name":"Alexandra","family_name":"Kowalczyk-Johnson","email":"alexandra.kowalczyk-johnson+%d@acme-corporation.example.com",`+
		`"locale":"en-GB","department":"Sales EMEA","employee_number":"E-%07d","cost_center":"CC-4471-EMEA-SALES",`+
		`"tenant":"acme-corporation-production-eu-west-1","zoneinfo":"Europe/Warsaw",`+
		`"address":{"street_address":"ul. Marszalkowska 142 m. 7","locality":"Warsaw","postal_code":"00-061","country":"PL"},`+
		`"authorization":{"permissions":[{"rsname":"orders","scopes":["view","edit","refund"]},{"rsname":"invoices","scopes":["view"]},`+
		`{"rsname":"customers","scopes":["view","edit"]},{"rsname":"reports","scopes":["view","schedule","export"]}]},`+
		`"entitlements":["orders-premium","reports-advanced","support-priority","billing-self-service"]}`,
		now.Add(time.Hour).Unix(), now.Unix(), now.Unix(), now.Add(-time.Minute).Unix(), i, iss, aud,
		i, i%1000, i%1000, i, i, i, i, i, i, i)
}
