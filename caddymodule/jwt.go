package caddymodule

import (
	"context"
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"go.uber.org/zap"

	"github.com/tokengate/tokengate/introspect"
)

// newJWTVerifier builds the key set (file, URL or discovered jwks_uri) and the
// verifier. Remote keys are fetched once now so a wrong URL fails the config
// load, unless allow_start_without_keys says the operator prefers to start
// and answer 503 until the keys arrive.
func (h *Handler) newJWTVerifier(pctx, bg context.Context, md *introspect.Metadata, e *poolEntry, logger *zap.Logger) (*introspect.JWTVerifier, error) {
	j := h.JWT
	var keys introspect.KeySet
	switch {
	case j.JWKSFile != "":
		ks, err := introspect.LoadKeySetFile(j.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("bearer_auth: jwt: jwks_file: %w", err)
		}
		keys = ks
	default:
		u := j.JWKSURL
		if u == "" {
			if md == nil || md.JWKSURI == "" {
				return nil, fmt.Errorf("bearer_auth: jwt: the metadata of %s has no jwks_uri; set jwt.jwks_url", h.Issuer)
			}
			u = md.JWKSURI
		}
		rks, err := introspect.NewRemoteKeySet(bg, introspect.RemoteKeySetConfig{
			URL:                u,
			HTTPClient:         introspect.NewHTTPClient(introspect.DefaultHTTPTimeout),
			MinRefreshInterval: time.Duration(j.RefreshInterval),
			Logger:             logger.Named("jwks"),
			Observer:           h.metrics,
			// A key removed at the AS is retired or compromised: drop
			// every cached decision (here, in Redis and across the
			// fleet) rather than keep accepting its tokens until ttl.
			OnKeysRemoved: func([]string) {
				if c := e.cache; c != nil {
					ctx, cancel := context.WithTimeout(bg, 5*time.Second)
					defer cancel()
					if _, err := c.Flush(ctx); err != nil {
						logger.Warn("flushing cached decisions after a key removal", zap.Error(err))
					}
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("bearer_auth: jwt: jwks_url: %w", err)
		}
		e.closers = append(e.closers, rks.Close)
		if err := rks.Refresh(pctx); err != nil {
			if !j.AllowStartWithoutKeys {
				return nil, fmt.Errorf("bearer_auth: jwt: fetching the JWKS from %s: %w (set allow_start_without_keys to start anyway and answer 503 until it is reachable)", u, err)
			}
			logger.Error("JWKS not reachable at startup; requests with JWTs get 503 until it is",
				zap.String("jwks_url", u), zap.Error(err))
		}
		keys = rks
	}
	algs := make([]jwa.SignatureAlgorithm, 0, len(j.Algorithms))
	for _, a := range j.Algorithms {
		algs = append(algs, jwa.SignatureAlgorithm(a))
	}
	v, err := introspect.NewJWTVerifier(keys, introspect.JWTConfig{
		Issuer:        h.Issuer,
		Audience:      h.Audience,
		Algorithms:    algs,
		Types:         acceptedTypes(j.Types),
		Leeway:        time.Duration(j.Leeway),
		MaxTokenBytes: h.MaxTokenLength,
	})
	if err != nil {
		return nil, fmt.Errorf("bearer_auth: jwt: %w", err)
	}
	return v, nil
}

// acceptedTypes is the RFC 9068 default (at+jwt) plus what the operator names:
// typ lists additional values to accept, for servers that do not type their
// access tokens, and never turns the standard type off.
func acceptedTypes(extra []string) []string {
	if len(extra) == 0 {
		return nil // the verifier's default: at+jwt, application/at+jwt
	}
	return append([]string{"at+jwt", "application/at+jwt"}, extra...)
}
