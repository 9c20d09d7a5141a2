package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tokengate/tokengate/internal/testas"
)

// startAS starts the test authorization server on 127.0.0.1 and writes
// into dir: issuer, introspection_url, and token (an opaque access token
// of client svc-a with scope read, valid for an hour), the token last and
// whole, for run.sh waits for it. stop stops the server.
func startAS(dir string) (as *testas.Server, stop func(), err error) {
	t := &programT{}
	defer func() {
		if err != nil {
			t.cleanup()
		}
	}()
	defer t.recover(&err)
	as = testas.Start(t, testas.WithTokenLifetime(time.Hour))
	tok := as.Token(t, "svc-a", "read")
	for _, f := range [][2]string{{"issuer", as.Issuer()}, {"introspection_url", as.IntrospectionURL()}, {"token", tok}} {
		tmp := filepath.Join(dir, "."+f[0])
		if err := os.WriteFile(tmp, []byte(f[1]+"\n"), 0o600); err != nil {
			return nil, nil, err
		}
		if err := os.Rename(tmp, filepath.Join(dir, f[0])); err != nil {
			return nil, nil, err
		}
	}
	return as, t.cleanup, nil
}

// programT is the testas.T of a program. Fatalf must not return (testas
// relies on that, as tests rely on t.Fatalf): it panics with the error,
// which the function that owns t recovers as its own error (t.recover).
type programT struct{ cleanups []func() }

type fatal struct{ err error }

func (*programT) Helper() {}

func (*programT) Fatalf(format string, args ...any) { panic(fatal{fmt.Errorf(format, args...)}) }

func (t *programT) Cleanup(f func()) { t.cleanups = append(t.cleanups, f) }

// cleanup runs the cleanups, last registered first.
func (t *programT) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	t.cleanups = nil
}

// recover turns a Fatalf panic into *err; other panics go on.
func (*programT) recover(err *error) {
	if r := recover(); r != nil {
		f, ok := r.(fatal)
		if !ok {
			panic(r)
		}
		*err = f.err
	}
}
