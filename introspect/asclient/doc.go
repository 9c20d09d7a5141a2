// Package asclient is everything the gateway says to the authorization
// server: discovery (RFC 8414, OpenID Connect Discovery), token
// introspection (RFC 7662), the gateway's own client authentication
// (client_secret_basic/post, client_secret_jwt, private_key_jwt, and a
// bearer token of its own from the client_credentials grant), and the
// explanation of what the server answered when it refused the gateway
// (ASError.Hint). It decides nothing about a caller's token: it reads the
// server's answer with package claims' strict reader and has
// claims.IntrospectionRules judge it.
package asclient
