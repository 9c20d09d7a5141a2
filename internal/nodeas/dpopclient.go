package nodeas

import (
	"bufio"
	"encoding/json"
	"io"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// DPoPClient makes DPoP proofs (RFC 9449) with panva's npm package dpop
// (the version package.json pins), run by node: proofs from a real client
// implementation, not from the tests' own JWT code. One node process per
// client, stopped when the test ends.
type DPoPClient struct {
	mu     sync.Mutex
	stdin  io.WriteCloser
	stdout *bufio.Scanner
}

// DPoPKey is a key pair held by the client; JKT is its RFC 7638
// thumbprint, the value of cnf.jkt in tokens bound to it.
type DPoPKey struct {
	ID  int    `json:"key"`
	JKT string `json:"jkt"`
}

// ProofOptions describe one proof.
type ProofOptions struct {
	Method, URL string
	// AccessToken, if set, is hashed into ath.
	AccessToken string
	// Skew shifts the client's clock (stale or future iat).
	Skew time.Duration
	// Nonce, if set, is the server-provided nonce (RFC 9449 §9).
	Nonce string
	// Tamper: "typ_jwt", "alg_none", "private_jwk", "bad_signature" (see
	// dpopclient.mjs).
	Tamper string
}

// StartDPoPClient starts node with dpopclient.mjs.
func StartDPoPClient(t testing.TB) *DPoPClient {
	t.Helper()
	node, dir := requireDeps(t)
	cmd := exec.Command(node, "dpopclient.mjs")
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &tailBuffer{max: 16 << 10}
	if err := cmd.Start(); err != nil {
		t.Fatalf("nodeas: start dpopclient: %v", err)
	}
	t.Cleanup(func() {
		_ = stdin.Close() // the client exits when stdin closes
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	return &DPoPClient{stdin: stdin, stdout: sc}
}

func (c *DPoPClient) call(t testing.TB, req map[string]any, out any) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	b, _ := json.Marshal(req)
	if _, err := c.stdin.Write(append(b, '\n')); err != nil {
		t.Fatalf("nodeas: dpopclient: %v", err)
	}
	if !c.stdout.Scan() {
		t.Fatalf("nodeas: dpopclient exited: %v", c.stdout.Err())
	}
	var e struct {
		Error string `json:"error"`
	}
	line := c.stdout.Bytes()
	if json.Unmarshal(line, &e) == nil && e.Error != "" {
		t.Fatalf("nodeas: dpopclient: %s", e.Error)
	}
	if err := json.Unmarshal(line, out); err != nil {
		t.Fatalf("nodeas: dpopclient answer: %v", err)
	}
}

// NewKey generates a key pair for alg: ES256, PS256, RS256 or Ed25519.
func (c *DPoPClient) NewKey(t testing.TB, alg string) DPoPKey {
	t.Helper()
	var k DPoPKey
	c.call(t, map[string]any{"op": "key", "alg": alg}, &k)
	return k
}

// Proof makes a proof with key for o.
func (c *DPoPClient) Proof(t testing.TB, key DPoPKey, o ProofOptions) string {
	t.Helper()
	var p struct {
		Proof string `json:"proof"`
	}
	c.call(t, map[string]any{"op": "proof", "key": key.ID, "htm": o.Method, "htu": o.URL,
		"token": o.AccessToken, "skew": o.Skew.Seconds(), "tamper": o.Tamper, "nonce": o.Nonce}, &p)
	return p.Proof
}
