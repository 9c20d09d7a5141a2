package asclient

import (
	"encoding/json"
	"strconv"
	"strings"
)

// ASError is an OAuth error the authorization server returned to the
// gateway's own call (introspection, token or discovery). It is never shown to
// the end user: it explains the gateway's misconfiguration to the operator.
type ASError struct {
	Endpoint    string
	Status      int
	Code        string // RFC 6749 §5.2 error code, e.g. invalid_client
	Description string // the server's own words (error_description)
}

func (e *ASError) Error() string {
	s := "authorization server at " + e.Endpoint + " answered HTTP " + strconv.Itoa(e.Status) + ": "
	if e.Code != "" {
		s += e.Code
	} else {
		s += "no OAuth error code"
	}
	if e.Description != "" {
		s += " (" + e.Description + ")"
	}
	return s
}

// tokenCodes are the OAuth error codes with which servers refuse to
// introspect one particular token: oidc-provider answers
// unsupported_token_type for every JWT-shaped token, others invalid_request
// or invalid_token for a token they cannot parse.
var tokenCodes = map[string]bool{"invalid_request": true, "unsupported_token_type": true, "invalid_token": true}

// AboutToken reports whether the server's error is about the token it was
// asked about rather than about the gateway or the server itself: HTTP 400
// with one of tokenCodes, and a description that does not match any of the
// known gateway-side mistakes (descriptionHints). A 401 or 403 refuses the
// gateway's credentials; a 404 or 5xx would hit any token.
func (e *ASError) AboutToken() bool {
	if e.Status != 400 || !tokenCodes[e.Code] {
		return false
	}
	d := strings.ToLower(e.Description)
	for _, h := range descriptionHints {
		if d != "" && strings.Contains(d, h.contains) {
			return false
		}
	}
	return true
}

// parseASError reads an RFC 6749 §5.2 error body; ok=false if the body is not
// one. The description is cut short: it goes to a log line.
func parseASError(body []byte) (code, description string, ok bool) {
	var e struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		return "", "", false
	}
	if len(e.ErrorDescription) > 300 {
		e.ErrorDescription = e.ErrorDescription[:300] + "…"
	}
	return sanitizeLog(e.Error), sanitizeLog(e.ErrorDescription), true
}

// sanitizeLog keeps a server-supplied string printable on one line.
func sanitizeLog(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// descriptionHints come from real authorization servers' troubleshooting
// pages (Oath's, Redox's) and what zitadel-based servers answer: their
// error_description wording, and what a client should check when it sees
// it. Matched case-insensitively as substrings, first match wins.
var descriptionHints = []struct{ contains, hint string }{
	{"audience", "the client assertion's aud: set introspect.assertion_audience to the value this server expects (its issuer, its token endpoint URL, or a realm-specific audience)"},
	{"expired or is not valid", "the client assertion's exp/iat: check this machine's clock against the server's, and keep the assertion lifetime short (the server may refuse exp more than 24h ahead)"},
	{"kid", "the assertion header needs a kid: give private_key a key id, or publish the key's RFC 7638 thumbprint at the server"},
	{"public key not found", "the server has no public key for this client_id and kid: check client_id, the kid, and that the key is saved at the server"},
	{"iat", "the client assertion's iat: this machine's clock is off (the server allows only a small skew)"},
	{"timestamp", "a client assertion timestamp: check this machine's clock (NTP) against the server's"},
	{"jwsalgorithm.none", "the client assertion had no usable alg header"},
	{"client assertion type", "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
	{"client authentication failed", "client_id and client_secret (or the signing key) do not match what the server has for this client; also check the realm"},
	{"not authorized for introspection", "the gateway's own access token lacks the introspect scope: set introspect.token_scope"},
	{"unable to process request", "the introspection call needs the gateway's Authorization header (auth_method bearer)"},
	{"unknown/invalid scope", "introspect.token_scope asks for a scope this client is not configured for at the server (check for typos)"},
	{"grant type is not supported", "the server does not allow the client_credentials grant for the gateway's client"},
	// "content-type required" (Redox's words), not just "content-type":
	// describeBody's "HTTP 404, Content-Type ..." for a non-OAuth answer
	// would match that and hide the 404/5xx hint.
	{"content-type required", "the server wants application/x-www-form-urlencoded (the gateway sends it; a proxy in between may alter it)"},
	// zitadel-based servers answer every client-assertion failure with these
	// same words (unauthorized_client); the cause is only in their own log.
	{"jwt assertion failed", "the server refused the gateway's client assertion without saying why: check introspect.assertion_audience (this server may expect its issuer identifier, not an endpoint URL), this machine's clock (iat/exp), that the server holds the public key for this client_id under the kid the gateway sends, and that it accepts the key's alg (some take only RS256/ES256/PS256)"},
}

// codeHints are the fallback per RFC 6749 §5.2 / RFC 6750 §3.1 code.
var codeHints = map[string]string{
	"invalid_client":          "the gateway's client credentials: client_id, client_secret (placeholders resolved?), auth_method, and the realm/tenant of the endpoint",
	"unauthorized_client":     "the gateway's client is not allowed to introspect (or to use this grant): enable it at the server, and check the realm",
	"invalid_request":         "the request the gateway sent: auth_method must be one the server supports for this client (see its metadata's introspection_endpoint_auth_methods_supported)",
	"invalid_scope":           "introspect.token_scope lists a scope the gateway's client may not request",
	"unsupported_grant_type":  "the server does not allow client_credentials for the gateway's client",
	"invalid_grant":           "the gateway's grant was refused: check its client registration at the server",
	"insufficient_scope":      "the gateway's own access token lacks the scope the server requires for introspection (often 'introspect'): set introspect.token_scope",
	"invalid_token":           "the gateway's own access token was refused: it will be renewed; if this repeats, check token_endpoint and the gateway's client",
	"server_error":            "the authorization server failed internally: check its logs; the gateway's request may have a parameter it cannot handle",
	"temporarily_unavailable": "the authorization server is overloaded or in maintenance",
}

// Hint returns what the operator should check for an error the authorization
// server returned to the gateway.
func (e *ASError) Hint() string {
	d := strings.ToLower(e.Description)
	if d != "" {
		for _, h := range descriptionHints {
			if strings.Contains(d, h.contains) {
				return h.hint
			}
		}
	}
	if h, ok := codeHints[e.Code]; ok {
		return h
	}
	switch {
	case e.Status == 401 || e.Status == 403:
		return "the server refused the gateway's credentials: check client_id, client_secret and auth_method"
	case e.Status == 404:
		return "the endpoint URL is wrong (404): check introspect.endpoint or the issuer's metadata"
	case e.Status >= 500:
		return "the authorization server is failing (5xx): check its health and logs"
	}
	return "check the gateway's introspect settings against the authorization server's documentation"
}
