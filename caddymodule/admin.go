package caddymodule

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/tokengate/tokengate/introspect"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI adds endpoints to Caddy's admin API for revoking cached
// decisions:
//
//	POST /bearer-auth/evict   {"token":"…"} or {"fingerprint":"…"}
//	POST /bearer-auth/flush
//
// With a Redis tier configured, an eviction reaches every gateway sharing it
// (publish/subscribe) within a second.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.bearer_auth",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes implements caddy.AdminRouter.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/bearer-auth/evict", Handler: caddy.AdminHandlerFunc(a.evict)},
		{Pattern: "/bearer-auth/flush", Handler: caddy.AdminHandlerFunc(a.flush)},
	}
}

type evictRequest struct {
	Token       string `json:"token,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
}

// adminResult is the answer of evict and flush. Evicted counts the entries
// this instance removed from its memory tier or from the shared Redis tier
// (a key held by both counts once), so that an operator can tell a revoked
// decision from a token nobody cached. Other instances drop their memory
// copies through Pub/Sub, which does not answer: they are not counted.
type adminResult struct {
	Evicted int `json:"evicted"`
	Caches  int `json:"caches"`
}

func (a *AdminAPI) evict(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("use POST")}
	}
	var req evictRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields() // a misspelt key must not be ignored silently
	if err := dec.Decode(&req); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("decoding request: %w", err)}
	}
	if (req.Token == "") == (req.Fingerprint == "") {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New(`give exactly one of "token" or "fingerprint"`)}
	}
	// Validated here, not by the caches, so that a bad fingerprint is a 400
	// even with no cache loaded, and every cache error below is the shared
	// tier's (a 503), never the request's.
	if fp := req.Fingerprint; fp != "" {
		if _, err := hex.DecodeString(fp); err != nil || len(fp) != 16 {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New(`"fingerprint" must be the 16 hex characters logged as token_fingerprint`)}
		}
	}
	return evictEverywhere(w, func(v *introspect.Validator) (int, error) {
		if req.Token != "" {
			// Each cache may key tokens differently (key_secret), so
			// the token is hashed per cache.
			removed, err := v.Evict(r.Context(), req.Token)
			if removed {
				return 1, err
			}
			return 0, err
		}
		return v.EvictFingerprint(r.Context(), req.Fingerprint)
	})
}

// evictEverywhere runs evict on every live validator and answers with what
// was removed, or with fleetError for the first failure.
func evictEverywhere(w http.ResponseWriter, evict func(*introspect.Validator) (int, error)) error {
	res := adminResult{}
	var firstErr error
	live.Range(func(k, _ any) bool {
		res.Caches++
		n, err := evict(k.(*poolEntry).validator)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		res.Evicted += n
		return true
	})
	if firstErr != nil {
		return fleetError(firstErr)
	}
	return writeJSON(w, res)
}

// fleetError reports an eviction that was applied to this instance's memory
// but may not have reached Redis or the other instances: not a success (the
// operator must retry), and not the request's fault.
func fleetError(err error) error {
	return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable,
		Err: fmt.Errorf("evicted on this instance, but the shared Redis tier or other instances may still hold it; retry: %w", err)}
}

func (a *AdminAPI) flush(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("use POST")}
	}
	return evictEverywhere(w, func(v *introspect.Validator) (int, error) { return v.Flush(r.Context()) })
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

// Interface guards
var _ caddy.AdminRouter = (*AdminAPI)(nil)
