package testas

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// storage is the op.Storage behind the test AS. Only what client_credentials,
// introspection, revocation, JWKS and private_key_jwt need is implemented; the
// embedded nil op.Storage stands in for the authorization-code, refresh and
// session methods, which no test reaches (our clients have no redirect URIs,
// so /authorize fails before it would touch storage).
type storage struct {
	op.Storage

	mu          sync.RWMutex
	clients     map[string]Client
	tokens      map[string]*tokenRecord
	current     *rsaKey
	keys        []*rsaKey // published in the JWKS; current is among them
	clockOffset time.Duration
	lifetime    time.Duration
}

type tokenRecord struct {
	id        string
	clientID  string
	subject   string
	scopes    []string
	audience  []string
	issuedAt  time.Time
	expiresAt time.Time
	revoked   bool
}

func newStorage(lifetime time.Duration) (*storage, error) {
	k, err := newRSAKey()
	if err != nil {
		return nil, err
	}
	return &storage{
		clients:  map[string]Client{},
		tokens:   map[string]*tokenRecord{},
		current:  k,
		keys:     []*rsaKey{k},
		lifetime: lifetime,
	}, nil
}

// now is the storage's clock. The library itself has no clock injection (it
// calls time.Now for JWT iat/nbf and for its own JWT exp check), so expiry in
// tests is driven from here: exp of new tokens and the "expired?" decision at
// introspection both use this clock.
func (s *storage) now() time.Time {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return time.Now().Add(s.clockOffset)
}

func (s *storage) client(id string) (Client, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.clients[id]
	return c, ok
}

func (s *storage) addClient(c Client) {
	c.Scopes = slices.Clone(c.Scopes)
	c.Audience = slices.Clone(c.Audience)
	c.Claims = maps.Clone(c.Claims)
	s.mu.Lock()
	s.clients[c.ID] = c
	s.mu.Unlock()
}

// errInvalidClient must carry its status: a bare oidc error from storage is
// answered 400 by the legacy server and a plain Go error 500 server_error,
// while RFC 6749 §5.2 wants 401 for failed client authentication.
func errInvalidClient() error {
	return op.NewStatusError(oidc.ErrInvalidClient(), 401)
}

func (s *storage) checkSecret(clientID, secret string) (Client, error) {
	c, ok := s.client(clientID)
	if !ok || c.Secret == "" || subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1 {
		return Client{}, errInvalidClient()
	}
	return c, nil
}

// --- client authentication ---

func (s *storage) GetClientByClientID(_ context.Context, clientID string) (op.Client, error) {
	c, ok := s.client(clientID)
	if !ok {
		return nil, fmt.Errorf("testas: unknown client %q", clientID)
	}
	return opClient{c}, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, clientID, clientSecret string) error {
	_, err := s.checkSecret(clientID, clientSecret)
	return err
}

func (s *storage) GetKeyByIDAndClientID(_ context.Context, keyID, clientID string) (*jose.JSONWebKey, error) {
	c, ok := s.client(clientID)
	if !ok || c.PublicKey == nil {
		return nil, fmt.Errorf("testas: client %q has no public key", clientID)
	}
	if c.KeyID != "" && keyID != c.KeyID {
		return nil, fmt.Errorf("testas: client %q has no key %q", clientID, keyID)
	}
	return &jose.JSONWebKey{Key: c.PublicKey, KeyID: c.KeyID, Use: "sig"}, nil
}

// --- client_credentials ---

func (s *storage) ClientCredentials(_ context.Context, clientID, clientSecret string) (op.Client, error) {
	c, err := s.checkSecret(clientID, clientSecret)
	if err != nil {
		return nil, err
	}
	return opClient{c}, nil
}

type ccRequest struct {
	clientID string
	scopes   []string
	audience []string
}

// The client is the subject of its own client_credentials token. It must not
// contain ':' because opaque tokens are the encryption of "tokenID:subject"
// and the library splits on ':' when it decrypts them.
func (r *ccRequest) GetSubject() string    { return r.clientID }
func (r *ccRequest) GetAudience() []string { return r.audience }
func (r *ccRequest) GetScopes() []string   { return r.scopes }

func (s *storage) ClientCredentialsTokenRequest(_ context.Context, clientID string, scopes []string) (op.TokenRequest, error) {
	c, ok := s.client(clientID)
	if !ok {
		return nil, errInvalidClient()
	}
	if len(scopes) == 0 {
		// RFC 6749 §3.3 lets the AS apply a default: everything the client may have.
		scopes = slices.Clone(c.Scopes)
	}
	for _, sc := range scopes {
		if !slices.Contains(c.Scopes, sc) {
			return nil, oidc.ErrInvalidScope().WithDescription("scope %q not allowed for client %q", sc, clientID)
		}
	}
	aud := slices.Clone(c.Audience)
	if len(aud) == 0 {
		// What oidc.NewAccessTokenClaims puts into a JWT for an empty audience;
		// introspection says the same so both token kinds agree.
		aud = []string{c.ID}
	}
	return &ccRequest{clientID: c.ID, scopes: scopes, audience: aud}, nil
}

func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	cc, ok := req.(*ccRequest)
	if !ok {
		return "", time.Time{}, fmt.Errorf("testas: unsupported token request %T", req)
	}
	id, err := randomID()
	if err != nil {
		return "", time.Time{}, err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := &tokenRecord{
		id:        id,
		clientID:  cc.clientID,
		subject:   cc.GetSubject(),
		scopes:    slices.Clone(cc.scopes),
		audience:  slices.Clone(cc.audience),
		issuedAt:  now,
		expiresAt: now.Add(s.lifetime),
	}
	s.tokens[id] = rec
	return id, rec.expiresAt, nil
}

// GetPrivateClaimsFromRequest exists because op.CreateJWT never sets the
// scope claim of an access token (AccessTokenClaims.Scopes stays empty);
// private claims are the only way in. Registered claims win over private ones
// in the library's merge, so iss/sub/aud/exp/iat/jti cannot be changed here.
func (s *storage) GetPrivateClaimsFromRequest(_ context.Context, req op.TokenRequest, _ []string) (map[string]any, error) {
	claims := map[string]any{}
	if cc, ok := req.(*ccRequest); ok {
		if c, ok := s.client(cc.clientID); ok {
			maps.Copy(claims, c.Claims)
		}
	}
	if len(req.GetScopes()) > 0 {
		claims["scope"] = strings.Join(req.GetScopes(), " ")
	}
	if cnf := s.confirmation(req.GetSubject()); cnf != nil {
		claims["cnf"] = cnf
	}
	if len(claims) == 0 {
		return nil, nil
	}
	return claims, nil
}

// confirmation is the RFC 7800 cnf of the client's tokens (the client is
// the subject of its client_credentials tokens), or nil.
func (s *storage) confirmation(clientID string) map[string]any {
	c, ok := s.client(clientID)
	if !ok || c.CertThumbprint == "" {
		return nil
	}
	return map[string]any{"x5t#S256": c.CertThumbprint}
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

// --- introspection ---

// SetIntrospectionFromToken answers for tokens issued here (opaque or JWT;
// the library hands over the token ID either way) and only to clients marked
// CanIntrospect. Returning an error is how storage says "not active": the
// library then answers {"active":false}.
func (s *storage) SetIntrospectionFromToken(ctx context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	caller, ok := s.client(clientID)
	if !ok || !caller.CanIntrospect {
		return errors.New("testas: client may not introspect")
	}
	now := s.now()
	s.mu.RLock()
	rec, ok := s.tokens[tokenID]
	var r tokenRecord
	if ok {
		r = *rec
	}
	s.mu.RUnlock()
	switch {
	case !ok:
		return errors.New("testas: unknown token")
	case r.subject != subject:
		return errors.New("testas: subject mismatch")
	case r.revoked:
		return errors.New("testas: token revoked")
	case !now.Before(r.expiresAt):
		return errors.New("testas: token expired")
	}
	resp.Scope = slices.Clone(r.scopes)
	resp.ClientID = r.clientID
	resp.Subject = r.subject
	resp.Audience = slices.Clone(r.audience)
	resp.Issuer = op.IssuerFromContext(ctx)
	resp.IssuedAt = oidc.FromTime(r.issuedAt)
	resp.NotBefore = oidc.FromTime(r.issuedAt)
	resp.Expiration = oidc.FromTime(r.expiresAt)
	resp.JWTID = r.id
	resp.TokenType = oidc.BearerToken
	if c, ok := s.client(r.clientID); ok && len(c.Claims) > 0 {
		resp.Claims = maps.Clone(c.Claims)
	}
	if cnf := s.confirmation(r.clientID); cnf != nil {
		if resp.Claims == nil {
			resp.Claims = map[string]any{}
		}
		resp.Claims["cnf"] = cnf
	}
	return nil
}

func (s *storage) SetUserinfoFromToken(context.Context, *oidc.UserInfo, string, string, string) error {
	return errors.New("testas: no userinfo for client_credentials tokens")
}

func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// --- revocation ---

// RevokeToken receives the token ID (the library decrypts opaque tokens and
// verifies JWTs first). A token the library could not decode arrives as the
// raw string and is simply unknown here: RFC 7009 §2.2 answers 200 for
// invalid tokens.
func (s *storage) RevokeToken(_ context.Context, tokenOrTokenID, _, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.tokens[tokenOrTokenID]
	if !ok {
		return nil
	}
	if rec.clientID != clientID {
		return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
	}
	rec.revoked = true
	return nil
}

// GetRefreshTokenInfo is asked first on every revocation without
// token_type_hint=access_token; ErrInvalidRefreshToken makes the library go on
// and decode the token as an access token.
func (s *storage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

// --- keys ---

// SigningKey and KeySet are consulted on every token/JWKS/introspection
// request, so rotating is just swapping under the mutex.
func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return signingKey{s.current}, nil
}

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]op.Key, len(s.keys))
	for i, k := range s.keys {
		out[i] = publicKey{k}
	}
	return out, nil
}

func (s *storage) rotate(keepOld bool) (string, error) {
	k, err := newRSAKey()
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if keepOld {
		s.keys = append(slices.Clone(s.keys), k)
	} else {
		s.keys = []*rsaKey{k}
	}
	s.current = k
	return k.id, nil
}

func (s *storage) Health(context.Context) error { return nil }

// --- keys and clients as the library wants them ---

type rsaKey struct {
	id  string
	key *rsa.PrivateKey
}

func newRSAKey() (*rsaKey, error) {
	pk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	id, err := randomID()
	if err != nil {
		return nil, err
	}
	return &rsaKey{id: id, key: pk}, nil
}

// op.SigningKey and op.Key both have a Key() method, one returning the private
// and one the public half, so one type cannot be both.
type signingKey struct{ k *rsaKey }

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k signingKey) Key() any                                    { return k.k.key }
func (k signingKey) ID() string                                  { return k.k.id }

type publicKey struct{ k *rsaKey }

func (k publicKey) ID() string                         { return k.k.id }
func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return k.k.key.Public() }

type opClient struct{ c Client }

var _ op.Client = opClient{}

func (c opClient) GetID() string                        { return c.c.ID }
func (c opClient) RedirectURIs() []string               { return nil }
func (c opClient) PostLogoutRedirectURIs() []string     { return nil }
func (c opClient) ApplicationType() op.ApplicationType  { return op.ApplicationTypeWeb }
func (c opClient) ResponseTypes() []oidc.ResponseType   { return nil }
func (c opClient) LoginURL(string) string               { return "" }
func (c opClient) IDTokenLifetime() time.Duration       { return time.Minute }
func (c opClient) DevMode() bool                        { return false }
func (c opClient) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c opClient) ClockSkew() time.Duration             { return 0 }
func (c opClient) IsScopeAllowed(scope string) bool     { return slices.Contains(c.c.Scopes, scope) }
func (c opClient) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeClientCredentials}
}
func (c opClient) RestrictAdditionalIdTokenScopes() func([]string) []string     { return same }
func (c opClient) RestrictAdditionalAccessTokenScopes() func([]string) []string { return same }

// AuthMethod matters to the legacy server's VerifyClient: a client declared
// private_key_jwt is refused when it sends a secret, and one declared basic is
// still accepted with client_secret_post. So only a key-only client is
// private_key_jwt; everyone with a secret may use either secret method.
func (c opClient) AuthMethod() oidc.AuthMethod {
	if c.c.Secret == "" && c.c.PublicKey != nil {
		return oidc.AuthMethodPrivateKeyJWT
	}
	return oidc.AuthMethodBasic
}

func (c opClient) AccessTokenType() op.AccessTokenType {
	if c.c.JWTAccessTokens {
		return op.AccessTokenTypeJWT
	}
	return op.AccessTokenTypeBearer
}

func same(s []string) []string { return s }

func randomID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
