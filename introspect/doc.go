// Package introspect decides whether a bearer token is good. New builds a
// Validator from a Config; the Validator checks a token (from the cache, by
// local JWT verification, or by RFC 7662 introspection), an Extractor finds
// the token in a request (RFC 6750 §2), and a Policy authorizes a good token
// for a route. It never imports Caddy, so a plain net/http middleware can use
// it too.
//
// The work is done in sub-packages, which cannot import this one:
// introspect/claims (the Decision and Error values and the strict readers
// every path shares), introspect/jwt (local JWT verification and the key
// sets) and introspect/asclient (everything that talks to the authorization
// server). The names callers use are re-exported here (reexport.go).
package introspect
