package caddymodule

import (
	"errors"
	"fmt"
	"time"

	"github.com/tokengate/tokengate/introspect"
)

// validateClientAuth checks that the chosen auth_method has what it needs.
// No I/O: the key file is read at provisioning.
func (h *Handler) validateClientAuth(i *IntrospectConfig) error {
	needSecret := func() error {
		if i.ClientSecret == "" {
			return fmt.Errorf("bearer_auth: introspect: auth_method %s needs client_secret (did an {env.*} or {file.*} placeholder resolve to nothing?)", i.AuthMethod)
		}
		return nil
	}
	// No audience is required: without assertion_audience and issuer, an
	// assertion's aud is the URL of the endpoint it is sent to
	// (introspect.AssertionAudience), and without an issuer that endpoint
	// is configured, so there always is one.
	checkAssertion := func() error {
		if i.AssertionLifetime != 0 && (time.Duration(i.AssertionLifetime) > introspect.MaxAssertionLifetime) {
			return fmt.Errorf("bearer_auth: introspect: assertion_lifetime %s is longer than %s: servers refuse long-lived assertions (keep it to minutes)", time.Duration(i.AssertionLifetime), introspect.MaxAssertionLifetime)
		}
		return nil
	}
	switch i.AuthMethod {
	case "client_secret_basic", "client_secret_post":
		return needSecret()
	case "client_secret_jwt":
		if err := needSecret(); err != nil {
			return err
		}
		return checkAssertion()
	case "private_key_jwt":
		if i.PrivateKey == "" {
			return errors.New("bearer_auth: introspect: auth_method private_key_jwt needs private_key <file> [<kid>]")
		}
		return checkAssertion()
	case "bearer":
		if i.TokenEndpoint == "" && h.Issuer == "" {
			return errors.New("bearer_auth: introspect: auth_method bearer needs token_endpoint (or issuer, to discover it)")
		}
		if i.PrivateKey == "" && i.ClientSecret == "" {
			return errors.New("bearer_auth: introspect: auth_method bearer needs client_secret or private_key, to get the gateway's own token")
		}
		if i.PrivateKey != "" {
			return checkAssertion()
		}
		return nil
	}
	return fmt.Errorf("bearer_auth: introspect: auth_method %q is not supported; use client_secret_basic, client_secret_post, client_secret_jwt, private_key_jwt or bearer", i.AuthMethod)
}

// newClientAuth builds how the gateway authenticates to the authorization
// server. For bearer, the gateway's own token is fetched with private_key_jwt
// when a key is configured, else with client_secret_basic.
func (h *Handler) newClientAuth(i *IntrospectConfig, md *introspect.Metadata) (introspect.ClientAuthenticator, error) {
	// The aud of each assertion is decided per call by the authenticator
	// (introspect.AssertionAudience): assertion_audience, else the issuer,
	// else the URL of the endpoint it is sent to.
	aud, issuer := i.AssertionAudience, h.Issuer
	lifetime := time.Duration(i.AssertionLifetime)
	keyAuth := func() (introspect.ClientAuthenticator, error) {
		key, err := introspect.LoadPrivateKey(i.PrivateKey, i.PrivateKeyID)
		if err != nil {
			return nil, fmt.Errorf("bearer_auth: introspect: private_key: %w", err)
		}
		a := introspect.PrivateKeyJWT{ClientID: i.ClientID, Key: key, Audience: aud, Issuer: issuer, Lifetime: lifetime}
		if err := a.Validate(); err != nil {
			return nil, fmt.Errorf("bearer_auth: introspect: %w", err)
		}
		return a, nil
	}
	switch i.AuthMethod {
	case "client_secret_post":
		return introspect.SecretPost{ClientID: i.ClientID, ClientSecret: i.ClientSecret}, nil
	case "client_secret_jwt":
		a := introspect.ClientSecretJWT{ClientID: i.ClientID, Secret: i.ClientSecret, Audience: aud, Issuer: issuer, Lifetime: lifetime}
		if err := a.Validate(); err != nil {
			return nil, fmt.Errorf("bearer_auth: introspect: %w", err)
		}
		return a, nil
	case "private_key_jwt":
		return keyAuth()
	case "bearer":
		var inner introspect.ClientAuthenticator = introspect.SecretBasic{ClientID: i.ClientID, ClientSecret: i.ClientSecret}
		if i.PrivateKey != "" {
			var err error
			if inner, err = keyAuth(); err != nil {
				return nil, err
			}
		}
		endpoint := i.TokenEndpoint
		if endpoint == "" {
			if md == nil || md.TokenEndpoint == "" {
				return nil, fmt.Errorf("bearer_auth: introspect: the metadata of %s has no token_endpoint; set token_endpoint", h.Issuer)
			}
			endpoint = md.TokenEndpoint
		}
		b := &introspect.BearerAuth{
			TokenEndpoint: endpoint,
			ClientAuth:    inner,
			Scopes:        i.TokenScope,
			HTTPClient:    introspect.NewHTTPClient(time.Duration(i.Timeout)),
			Timeout:       time.Duration(i.Timeout),
			Observer:      h.metrics,
		}
		if err := b.Validate(); err != nil {
			return nil, fmt.Errorf("bearer_auth: introspect: %w", err)
		}
		return b, nil
	}
	return introspect.SecretBasic{ClientID: i.ClientID, ClientSecret: i.ClientSecret}, nil
}
