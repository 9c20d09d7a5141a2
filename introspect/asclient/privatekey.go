package asclient

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/tokengate/tokengate/introspect/internal/httpbody"
	"github.com/tokengate/tokengate/introspect/jwt"
)

// The gateway's own private key, for private_key_jwt: reading it from a file
// and checking it can sign what servers accept.

// maxRSABits bounds RSA keys we sign with: a 16 kbit key costs ~1 s per
// assertion and is certainly a mistake (or a hostile file).
const maxRSABits = 8192

// maxPrivateKeyBytes bounds a private key file; a real one is a few KiB.
const maxPrivateKeyBytes = 1 << 20

// privateKeyAlg is the algorithm key signs with: its own alg if set (it must
// fit the key), else the one its type implies.
func privateKeyAlg(key jwk.Key) (jwa.SignatureAlgorithm, error) {
	if u := key.KeyUsage(); u != "" && u != string(jwk.ForSignature) {
		return "", fmt.Errorf("the key's use is %q, not sig", u)
	}
	if ops := key.KeyOps(); len(ops) > 0 && !slices.Contains(ops, jwk.KeyOpSign) {
		return "", errors.New("the key's key_ops do not include sign")
	}
	declared := jwa.SignatureAlgorithm(key.Algorithm().String())
	switch k := key.(type) {
	case jwk.RSAPrivateKey:
		if bits := jwt.RSABits(k); bits < jwt.MinRSABits || bits > maxRSABits {
			return "", fmt.Errorf("the RSA key is %d bits; %d to %d are accepted (RFC 7518 §3.3)", bits, jwt.MinRSABits, maxRSABits)
		}
		switch declared {
		case "":
			return jwa.RS256, nil
		case jwa.RS256, jwa.RS384, jwa.RS512, jwa.PS256, jwa.PS384, jwa.PS512:
			return declared, nil
		}
	case jwk.ECDSAPrivateKey:
		want := jwt.AlgForCurve(k.Crv())
		if want == "" {
			return "", fmt.Errorf("the EC curve %q is not P-256, P-384 or P-521", k.Crv())
		}
		if declared == "" || declared == want {
			return want, nil
		}
	case jwk.OKPPrivateKey:
		if k.Crv() != jwa.Ed25519 {
			return "", fmt.Errorf("the OKP curve %q cannot sign (Ed25519 can)", k.Crv())
		}
		if declared == "" || declared == jwa.EdDSA {
			return jwa.EdDSA, nil
		}
	case jwk.RSAPublicKey, jwk.ECDSAPublicKey, jwk.OKPPublicKey:
		return "", errors.New("this is a public key: private_key needs the private key (the server gets the public one)")
	case jwk.SymmetricKey:
		return "", errors.New("this is a shared secret (kty oct): use auth_method client_secret_jwt with it as client_secret")
	default:
		return "", fmt.Errorf("unsupported key type %q", key.KeyType())
	}
	return "", fmt.Errorf("the key's alg %q does not fit its type %s", declared, key.KeyType())
}

// privateKeyID is the kid an assertion carries: the key's own, else
// configured, else the RFC 7638 thumbprint (SHA-256, base64url), which is what
// many servers compute for a registered key that has no kid.
func privateKeyID(key jwk.Key, configured string) (string, error) {
	if kid := key.KeyID(); kid != "" {
		return kid, nil
	}
	if configured != "" {
		return configured, nil
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("computing the key's RFC 7638 thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// LoadPrivateKey reads the gateway's private key for private_key_jwt from a
// PEM file (PKCS#8 "PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY", SEC1 "EC PRIVATE
// KEY") or a JWK / JWK Set JSON file. See ParsePrivateKey.
func LoadPrivateKey(path, kid string) (jwk.Key, error) {
	k, err := ReadPrivateKeyFile(path, kid)
	if err != nil {
		return nil, fmt.Errorf("private_key: %w", err)
	}
	return k, nil
}

// ReadPrivateKeyFile reads a private signing key file, at most
// maxPrivateKeyBytes of it, and parses it as ParsePrivateKey does. Its
// errors name no setting, so that each caller prefixes its own: an error
// opening or reading the file is returned as os.Open's, or as "reading PATH:
// ...", and one about what the file holds (too large, not a usable key) is a
// *KeyFileError.
func ReadPrivateKeyFile(path, kid string) (jwk.Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := httpbody.Read(f, maxPrivateKeyBytes)
	if errors.Is(err, httpbody.ErrTooLarge) {
		return nil, &KeyFileError{Path: path, Err: errPrivateKeyTooLarge}
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	k, err := parsePrivateKey(data, kid)
	if err != nil {
		return nil, &KeyFileError{Path: path, Err: err}
	}
	return k, nil
}

// KeyFileError is a ReadPrivateKeyFile error about what a key file holds.
// Err names neither the file nor a setting; Error adds the file.
type KeyFileError struct {
	Path string
	Err  error
}

func (e *KeyFileError) Error() string { return fmt.Sprintf("%v (file %s)", e.Err, e.Path) }

func (e *KeyFileError) Unwrap() error { return e.Err }

var errPrivateKeyTooLarge = fmt.Errorf("larger than %d bytes", maxPrivateKeyBytes)

// ParsePrivateKey parses a private signing key (PEM or JWK JSON) and returns
// it as a JWK with alg and kid set: the alg is the JWK's own or the one the
// key type implies (RSA→RS256, P-256→ES256, Ed25519→EdDSA); the kid is the
// JWK's own, else kid, else the key's RFC 7638 thumbprint. In a JWK Set with
// several keys, kid selects the key.
func ParsePrivateKey(data []byte, kid string) (jwk.Key, error) {
	k, err := parsePrivateKey(data, kid)
	if err != nil {
		return nil, fmt.Errorf("private_key: %w", err)
	}
	return k, nil
}

// parsePrivateKey is ParsePrivateKey with errors that name no setting.
func parsePrivateKey(data []byte, kid string) (jwk.Key, error) {
	if len(data) > maxPrivateKeyBytes {
		return nil, errPrivateKeyTooLarge
	}
	data = bytes.TrimSpace(data)
	var key jwk.Key
	var err error
	switch {
	case bytes.Contains(data, []byte("-----BEGIN")):
		key, err = parsePEMPrivateKey(data)
	case len(data) > 0 && data[0] == '{':
		key, err = parseJWKPrivateKey(data, kid)
	default:
		err = errors.New("neither PEM nor JWK JSON")
	}
	if err != nil {
		return nil, err
	}
	// Work on a copy: setting alg/kid must not touch a caller's key.
	if key, err = key.Clone(); err != nil {
		return nil, err
	}
	if err := key.Validate(); err != nil {
		return nil, err
	}
	alg, err := privateKeyAlg(key)
	if err != nil {
		return nil, err
	}
	if err := checkRawPrivateKey(key); err != nil {
		return nil, err
	}
	id, err := privateKeyID(key, kid)
	if err != nil {
		return nil, err
	}
	if err := key.Set(jwk.AlgorithmKey, alg); err != nil {
		return nil, err
	}
	if err := key.Set(jwk.KeyIDKey, id); err != nil {
		return nil, err
	}
	return key, nil
}

// checkRawPrivateKey makes sure the private half is consistent with the
// public half, so a corrupt JWK fails at load time and not as a string of
// invalid_client answers.
func checkRawPrivateKey(key jwk.Key) error {
	var raw any
	if err := key.Raw(&raw); err != nil {
		return err
	}
	switch k := raw.(type) {
	case *rsa.PrivateKey:
		if err := k.Validate(); err != nil {
			return fmt.Errorf("invalid RSA private key: %w", err)
		}
	case *ecdsa.PrivateKey:
		// The ECDH forms check that d is in range and the point is on the
		// curve; then d·G must be the published point.
		priv, err := k.ECDH()
		if err != nil {
			return fmt.Errorf("invalid EC private key: %w", err)
		}
		pub, err := k.PublicKey.ECDH()
		if err != nil {
			return fmt.Errorf("invalid EC public key: %w", err)
		}
		if !priv.PublicKey().Equal(pub) {
			return errors.New("invalid EC private key: d does not match x/y")
		}
	case ed25519.PrivateKey:
		if len(k) != ed25519.PrivateKeySize {
			return errors.New("invalid Ed25519 private key")
		}
		seed := ed25519.NewKeyFromSeed(k.Seed())
		if !bytes.Equal(seed, k) {
			return errors.New("invalid Ed25519 private key: d does not match x")
		}
	default:
		return fmt.Errorf("unsupported private key type %T", raw)
	}
	return nil
}

func parsePEMPrivateKey(data []byte) (jwk.Key, error) {
	var found any
	var sawPublic bool
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if _, enc := block.Headers["Proc-Type"]; enc {
			return nil, errors.New("the PEM key is encrypted: store it unencrypted (e.g. openssl pkcs8 -topk8 -nocrypt) and protect the file instead")
		}
		var raw any
		var err error
		switch block.Type {
		case "PRIVATE KEY": // PKCS#8
			raw, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY": // PKCS#1
			raw, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY": // SEC1
			raw, err = x509.ParseECPrivateKey(block.Bytes)
		case "EC PARAMETERS":
			// openssl ecparam -genkey writes this before the key.
			continue
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the PEM key is encrypted (PKCS#8): store it unencrypted (openssl pkcs8 -topk8 -nocrypt) and protect the file instead")
		case "OPENSSH PRIVATE KEY":
			return nil, errors.New("the key is in OpenSSH format: convert it to PKCS#8 (ssh-keygen -p -m PKCS8 -f FILE)")
		case "PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE":
			sawPublic = true
			continue
		default:
			return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("parsing the PEM %q block: %w", block.Type, err)
		}
		if found != nil {
			return nil, errors.New("the PEM file holds more than one private key")
		}
		found = raw
	}
	if found == nil {
		if sawPublic {
			return nil, errors.New("the PEM file holds only a public key or certificate: private_key needs the private key (the server gets the public one)")
		}
		return nil, errors.New("no PEM private key block found")
	}
	switch k := found.(type) {
	case *rsa.PrivateKey, ed25519.PrivateKey:
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return nil, fmt.Errorf("the EC curve %s is not P-256, P-384 or P-521", k.Curve.Params().Name)
		}
	case *ecdh.PrivateKey:
		return nil, errors.New("an X25519 key cannot sign: use Ed25519, EC P-256 or RSA")
	default:
		return nil, fmt.Errorf("unsupported private key type %T", found)
	}
	return jwk.FromRaw(found)
}

func parseJWKPrivateKey(data []byte, kid string) (jwk.Key, error) {
	// jwk.Parse takes a single JWK as well as a JWK Set.
	set, err := jwk.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("parsing the JWK: %w", err)
	}
	switch n := set.Len(); {
	case n == 0:
		return nil, errors.New("the JWK Set is empty")
	case n == 1:
		k, _ := set.Key(0)
		return k, nil
	case kid == "":
		return nil, fmt.Errorf("the JWK Set holds %d keys (kids %s): name one as private_key's kid", n, setKids(set))
	default:
		k, ok := set.LookupKeyID(kid)
		if !ok {
			return nil, fmt.Errorf("the JWK Set has no key with kid %q (it has %s)", kid, setKids(set))
		}
		return k, nil
	}
}

func setKids(set jwk.Set) string {
	var ids []string
	for i := 0; i < set.Len() && i < 10; i++ {
		k, _ := set.Key(i)
		ids = append(ids, fmt.Sprintf("%q", k.KeyID()))
	}
	return strings.Join(ids, ", ")
}
