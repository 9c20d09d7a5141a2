package asclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/tokengate/tokengate/introspect/claims"
)

func TestIsTimeoutAsksTheErrorNotItsText(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"the caller's deadline", fmt.Errorf("calling: %w", context.DeadlineExceeded), true},
		{"a DNS timeout", &net.DNSError{Err: "i/o timeout", IsTimeout: true}, true},
		{"a refused connection", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, false},
		{"a message that merely says Timeout", errors.New("upstream said: Timeout"), false},
	} {
		if got := isTimeout(tc.err); got != tc.want {
			t.Errorf("%s: isTimeout = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A transport timeout whose message has no "Timeout" in it and that is not
// context.DeadlineExceeded ("net/http: TLS handshake timeout") is a
// timeout, not an unreachable server.
func TestIntrospectionTLSHandshakeTimeoutIsATimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accept, and never answer the TLS handshake
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	in := &Introspector{
		Endpoint:   "https://" + ln.Addr().String() + "/introspect",
		Auth:       SecretBasic{ClientID: "gw", ClientSecret: "s"},
		HTTPClient: &http.Client{Transport: &http.Transport{TLSHandshakeTimeout: 50 * time.Millisecond}},
		Timeout:    5 * time.Second,
	}
	_, err = in.Introspect(context.Background(), "opaque")
	if e := claims.AsError(err); e.Code != claims.CodeUnavailable || e.Reason != "timeout" {
		t.Fatalf("got %v (reason %q), want a temporarily_unavailable timeout", err, e.Reason)
	}
}
