package caddymodule

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// caddyMu serialises tests that run Caddy in-process: Caddy holds one
// running config per process.
var caddyMu sync.Mutex

type testCaddy struct {
	t *testing.T
	// client is this Caddy's own: a reload closes the old server's
	// keep-alive connections, so load drops the idle ones before the next
	// request rather than letting it race the old server's shutdown.
	client  *http.Client
	base    string // http://127.0.0.1:PORT
	admin   string
	logFile string
	port    int
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startCaddy runs Caddy in-process on free loopback ports with site as the
// body of one site block, and debug logs written to a file the test can read.
func startCaddy(t *testing.T, site string) *testCaddy {
	t.Helper()
	caddyMu.Lock()
	tc := &testCaddy{t: t, logFile: filepath.Join(t.TempDir(), "caddy.log"),
		client: &http.Client{Timeout: testClient.Timeout, Transport: http.DefaultTransport.(*http.Transport).Clone()}}
	t.Cleanup(func() {
		tc.client.CloseIdleConnections()
		_ = caddy.Stop()
		caddyMu.Unlock()
	})
	// A port found free can be taken by a parallel test process before
	// Caddy binds it; Caddy binds 127.0.0.1 exactly (default_bind), so that
	// shows as an error here rather than as another server answering.
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		tc.port = freePort(t)
		tc.base = fmt.Sprintf("http://127.0.0.1:%d", tc.port)
		tc.admin = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		if err = tc.tryLoad(site); err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		t.Fatalf("loading config: %v", err)
	}
	return tc
}

func (tc *testCaddy) caddyfile(site string) string {
	return fmt.Sprintf(`{
	admin %s
	http_port %d
	default_bind 127.0.0.1
	auto_https off
	persist_config off
	log {
		output file %s
		level DEBUG
	}
}
http://127.0.0.1:%d {
%s
}
`, tc.admin, tc.port, tc.logFile, tc.port, site)
}

// load (re)loads the config; errors fail the test.
func (tc *testCaddy) load(site string) {
	tc.t.Helper()
	if err := tc.tryLoad(site); err != nil {
		tc.t.Fatalf("loading config: %v", err)
	}
	tc.client.CloseIdleConnections()
}

func (tc *testCaddy) tryLoad(site string) error {
	cfg, err := adaptCaddyfile(tc.caddyfile(site))
	if err != nil {
		return err
	}
	return caddy.Load(cfg, true)
}

func adaptCaddyfile(cf string) ([]byte, error) {
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), nil)
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		if !strings.Contains(w.Message, "formatted") {
			return nil, fmt.Errorf("adapter warning: %s", w.Message)
		}
	}
	return cfg, nil
}

type result struct {
	status int
	header http.Header
	body   string
}

var testClient = &http.Client{Timeout: 10 * time.Second}

func (tc *testCaddy) get(path, authorization string) result {
	tc.t.Helper()
	return tc.do(http.MethodGet, path, map[string]string{"Authorization": authorization}, nil)
}

func (tc *testCaddy) do(method, path string, headers map[string]string, body []byte) result {
	tc.t.Helper()
	req, err := http.NewRequest(method, tc.base+path, bytes.NewReader(body))
	if err != nil {
		tc.t.Fatal(err)
	}
	for k, v := range headers {
		if v != "" {
			req.Header.Add(k, v)
		}
	}
	resp, err := tc.client.Do(req)
	if err != nil {
		tc.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (tc *testCaddy) logs() string {
	b, _ := os.ReadFile(tc.logFile)
	return string(b)
}

func (r result) expect(t *testing.T, status int, wwwAuth, body string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status = %d, want %d (body %q)", r.status, status, r.body)
	}
	if got := r.header.Get("WWW-Authenticate"); got != wwwAuth {
		t.Errorf("WWW-Authenticate = %q\n                   want %q", got, wwwAuth)
	}
	if strings.TrimSpace(r.body) != body {
		t.Errorf("body = %q\n       want %q", strings.TrimSpace(r.body), body)
	}
}

func TestMain(m *testing.M) {
	// The test binary doubles as a real Caddy executable (it links Caddy's
	// CLI, the standard modules and this plugin), so tests can start
	// separate Caddy processes — a fleet — in seconds, without xcaddy.
	if os.Getenv(runAsCaddyEnv) == "1" {
		os.Args = append([]string{"caddy"}, strings.Fields(os.Getenv(runAsCaddyArgsEnv))...)
		caddycmd.Main()
		return
	}
	// The in-process authorization server logs every route and error
	// through the global slog logger; keep test output readable.
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

// Environment variables that make the test binary run as Caddy.
const (
	runAsCaddyEnv     = "TOKENGATE_TEST_RUN_AS_CADDY"
	runAsCaddyArgsEnv = "TOKENGATE_TEST_CADDY_ARGS"
)

// caddyProcess is a separate Caddy process (this test binary re-executed).
type caddyProcess struct {
	cmd   *exec.Cmd
	Base  string // http://127.0.0.1:PORT
	Admin string // http://127.0.0.1:PORT of the admin API
	out   *lockedBuffer
	done  chan struct{} // closed when the process has exited
}

// stop interrupts the process (a graceful Caddy shutdown) and waits for it.
func (p *caddyProcess) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// startCaddyProcess runs Caddy in a child process with the given Caddyfile
// body for one site, and waits until it serves. Use it where one process is
// not enough (several instances sharing Redis).
func startCaddyProcess(t *testing.T, site string) *caddyProcess {
	t.Helper()
	// A port found free can be taken by a parallel test process before the
	// child binds it: the child then exits at once, and we try new ports.
	for attempt := 0; ; attempt++ {
		p, exited := tryStartCaddyProcess(t, site)
		if p != nil {
			return p
		}
		if !exited || attempt == 4 {
			t.Fatalf("caddy process did not start")
		}
	}
}

func tryStartCaddyProcess(t *testing.T, site string) (p *caddyProcess, exited bool) {
	t.Helper()
	port, admin := freePort(t), freePort(t)
	cf := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	http_port %d
	default_bind 127.0.0.1
	auto_https off
	persist_config off
	metrics
}
http://127.0.0.1:%d {
%s
}
`, admin, port, port, site)
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	p = &caddyProcess{Base: fmt.Sprintf("http://127.0.0.1:%d", port), Admin: fmt.Sprintf("http://127.0.0.1:%d", admin), out: &lockedBuffer{b: new(bytes.Buffer)}}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), runAsCaddyEnv+"=1", runAsCaddyArgsEnv+"=run --config "+path+" --adapter caddyfile")
	out := p.out
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	p.done = done
	go func() { _ = p.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("caddy process output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			t.Logf("caddy process exited at start (retrying on other ports):\n%s", out.String())
			return nil, true
		default:
		}
		// The admin API starts before the HTTP server is provisioned:
		// wait for the site's port as well.
		if resp, err := testClient.Get(p.Admin + "/config/"); err == nil {
			resp.Body.Close()
			if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
				c.Close()
				return p, false
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("caddy process did not start:\n%s", out.String())
	return nil, false
}

// lockedBuffer lets the child's output be read while it is being written.
type lockedBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// doMulti sends one header with several values (as separate header lines).
func (tc *testCaddy) doMulti(path, name string, values []string) result {
	tc.t.Helper()
	req, err := http.NewRequest(http.MethodGet, tc.base+path, nil)
	if err != nil {
		tc.t.Fatal(err)
	}
	for _, v := range values {
		req.Header.Add(name, v)
	}
	resp, err := tc.client.Do(req)
	if err != nil {
		tc.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
