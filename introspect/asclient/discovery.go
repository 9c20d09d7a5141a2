package asclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokengate/tokengate/introspect/internal/httpbody"
)

// Metadata is the part of an authorization server's metadata (RFC 8414, or
// OpenID Connect Discovery 1.0) the gateway uses.
type Metadata struct {
	Issuer                     string   `json:"issuer"`
	IntrospectionEndpoint      string   `json:"introspection_endpoint,omitempty"`
	TokenEndpoint              string   `json:"token_endpoint,omitempty"`
	JWKSURI                    string   `json:"jwks_uri,omitempty"`
	RevocationEndpoint         string   `json:"revocation_endpoint,omitempty"`
	IntrospectionAuthMethods   []string `json:"introspection_endpoint_auth_methods_supported,omitempty"`
	TokenEndpointAuthMethods   []string `json:"token_endpoint_auth_methods_supported,omitempty"`
	IntrospectionAuthAlgValues []string `json:"introspection_endpoint_auth_signing_alg_values_supported,omitempty"`
	// Source is the URL the metadata came from.
	Source string `json:"-"`
	// Date is the server's Date header, for the doctor's clock-offset check.
	Date time.Time `json:"-"`
}

// MetadataURLs returns the discovery URLs to try for an issuer, in order:
// RFC 8414 §3.1 (the well-known segment goes between host and path), then
// OpenID Connect Discovery (appended to the issuer).
func MetadataURLs(issuer string) ([]string, error) {
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("issuer %q is not an absolute http(s) URL", issuer)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		// RFC 8414 §2: the issuer has no query or fragment.
		return nil, fmt.Errorf("issuer %q must not have a query or fragment", issuer)
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	rfc8414 := u.Scheme + "://" + u.Host + "/.well-known/oauth-authorization-server" + path
	oidc := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	return []string{rfc8414, oidc}, nil
}

// Discover fetches the issuer's metadata and checks that it is about that
// issuer (RFC 8414 §3.3): a metadata document naming another issuer would let
// a misrouted config trust the wrong server.
func Discover(ctx context.Context, client *http.Client, issuer string) (*Metadata, error) {
	urls, err := MetadataURLs(issuer)
	if err != nil {
		return nil, err
	}
	if client == nil {
		client = NewHTTPClient(DefaultHTTPTimeout)
	}
	var errs []error
	for _, u := range urls {
		md, err := fetchMetadata(ctx, client, u)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if md.Issuer != issuer {
			return nil, fmt.Errorf("metadata at %s names issuer %q, not %q: the issuer setting must match the server's issuer exactly (scheme, host, path, trailing slash)", u, md.Issuer, issuer)
		}
		return md, nil
	}
	return nil, fmt.Errorf("discovering %s: %w", issuer, errors.Join(errs...))
}

func fetchMetadata(ctx context.Context, client *http.Client, u string) (*Metadata, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultHTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := httpbody.Read(resp.Body, DefaultMaxResponseBytes)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	if !httpbody.IsJSON(resp.Header.Get("Content-Type")) {
		return nil, fmt.Errorf("not JSON (%s)", describeBody(resp, len(body)))
	}
	var md Metadata
	if err := json.Unmarshal(body, &md); err != nil {
		return nil, fmt.Errorf("malformed metadata: %w", err)
	}
	if md.Issuer == "" {
		return nil, errors.New("metadata has no issuer")
	}
	md.Source = u
	if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		md.Date = d
	}
	return &md, nil
}
