package main

import (
	"crypto"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"strings"
	"unsafe"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/tokengate/tokengate/internal/benchjwt"
)

// stdlibVerify is bench/run.sh's floor inside Caddy: the standard
// library's check of the bearer token's signature (benchjwt.Verify, with a
// key parsed at provision) and nothing else — no syntax check, no claims,
// no cache. A site with it beside bare Caddy is what the cold path could
// cost at the very least through a real gateway, where the signature math
// also slows the proxy around it (its tables push Caddy's own code and data
// out of the CPU caches). It is built only into the bench binary.
type stdlibVerify struct {
	JWKS string `json:"jwks"`
	pub  crypto.PublicKey
}

func init() {
	caddy.RegisterModule(stdlibVerify{})
	httpcaddyfile.RegisterHandlerDirective("bench_stdlib_verify", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		var m stdlibVerify
		return &m, m.UnmarshalCaddyfile(h.Dispenser)
	})
}

func (stdlibVerify) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.bench_stdlib_verify", New: func() caddy.Module { return new(stdlibVerify) }}
}

// Provision reads the first key of the JWKS file.
func (m *stdlibVerify) Provision(caddy.Context) error {
	b, err := os.ReadFile(m.JWKS)
	if err != nil {
		return err
	}
	set, err := jwk.Parse(b)
	if err != nil {
		return fmt.Errorf("%s: %w", m.JWKS, err)
	}
	key, ok := set.Key(0)
	if !ok {
		return fmt.Errorf("%s: no key", m.JWKS)
	}
	return key.Raw(&m.pub)
}

var sigEncoding = base64.RawURLEncoding

func (m *stdlibVerify) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	dot := strings.LastIndexByte(tok, '.')
	var buf [512]byte
	sig, err := sigEncoding.AppendDecode(buf[:0], []byte(tok[dot+1:]))
	if dot < 0 || err != nil || !benchjwt.Verify(m.pub, benchjwt.Signed{Input: unsafe.Slice(unsafe.StringData(tok), dot), Sig: sig}) {
		w.WriteHeader(http.StatusUnauthorized)
		return nil
	}
	return next.ServeHTTP(w, r)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*stdlibVerify)(nil)
	_ caddyhttp.MiddlewareHandler = (*stdlibVerify)(nil)
	_ caddyfile.Unmarshaler       = (*stdlibVerify)(nil)
)

// UnmarshalCaddyfile: bench_stdlib_verify * <jwks file> (the * keeps a
// file path from being read as a path matcher).
func (m *stdlibVerify) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if !d.Args(&m.JWKS) {
		return d.ArgErr()
	}
	return nil
}
