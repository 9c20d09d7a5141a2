package caddymodule

import (
	"bytes"
	"crypto/rand"
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

	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// The end-to-end harness. Every test that needs a running Caddy gets a
// process of its own: this test binary re-executed as Caddy (see TestMain),
// on free loopback ports. Caddy holds one running config per process, so
// separate processes are what lets these tests run in parallel.

type testCaddy struct {
	t *testing.T
	// client is this Caddy's own: a reload closes the old server's
	// keep-alive connections, so load drops the idle ones before the next
	// request rather than letting it race the old server's shutdown.
	client    *http.Client
	base      string // http://127.0.0.1:PORT
	admin     string // 127.0.0.1:PORT of the admin API
	logFile   string
	port      int
	adminPort int
	proc      *caddyProcess
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

// caddyOption changes how startCaddy starts Caddy.
type caddyOption func(*[]string)

// withEnv adds environment variables ("NAME=value") to the Caddy process,
// e.g. for {env.*} placeholders (t.Setenv cannot be used in parallel tests).
func withEnv(kv ...string) caddyOption {
	return func(env *[]string) { *env = append(*env, kv...) }
}

// startCaddy runs Caddy in a process of its own on free loopback ports with
// site as the body of one site block, and debug logs written to a file the
// test can read (tc.logs). It returns once the config is loaded and served.
func startCaddy(t *testing.T, site string, opts ...caddyOption) *testCaddy {
	t.Helper()
	return startCaddyFor(t, func(string) string { return site }, opts...)
}

// startCaddyFor is startCaddy for a site that names Caddy's own URL (base),
// known only once its port is chosen. (Starting with a placeholder and
// reloading would make the first request race the reload.)
func startCaddyFor(t *testing.T, site func(base string) string, opts ...caddyOption) *testCaddy {
	t.Helper()
	var env []string
	for _, o := range opts {
		o(&env)
	}
	tc := &testCaddy{t: t, logFile: filepath.Join(t.TempDir(), "caddy.log"),
		client: &http.Client{Timeout: testClient.Timeout, Transport: http.DefaultTransport.(*http.Transport).Clone()}}
	t.Cleanup(tc.client.CloseIdleConnections)
	tc.proc = launchCaddy(t, env, func(port, admin int) string {
		tc.port, tc.adminPort = port, admin
		tc.base = fmt.Sprintf("http://127.0.0.1:%d", port)
		tc.admin = fmt.Sprintf("127.0.0.1:%d", admin)
		return tc.caddyfile(site(tc.base))
	})
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
}

// tryLoad adapts the Caddyfile with site and loads it through the admin
// API (POST /load), as an operator's reload does.
func (tc *testCaddy) tryLoad(site string) error {
	cfg, err := adaptCaddyfile(tc.caddyfile(site))
	if err != nil {
		return err
	}
	return tc.loadJSON(cfg)
}

// loadJSON loads a native JSON config through the admin API. It returns
// once the old config's servers have closed their listeners: Caddy binds
// each new listener next to the old one (SO_REUSEPORT) and closes the old
// one from a goroutine, which for the admin server always, and for the
// HTTP server now and then (3 reloads in 60 here), runs after POST /load
// has answered. A connection the kernel queues on the old socket in
// between is reset: the request fails with EOF.
func (tc *testCaddy) loadJSON(cfg []byte) error {
	tc.t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+tc.admin+"/load", bytes.NewReader(cfg))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Close = true // the admin server answering is the one being replaced
	resp, err := tc.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /load: status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	for _, port := range []int{tc.port, tc.adminPort} {
		waitFor(tc.t, 10*time.Second, 5*time.Millisecond, fmt.Sprintf("the old listener on port %d to close", port),
			func() bool { return listeners(port) <= 1 })
	}
	tc.client.CloseIdleConnections()
	return nil
}

// listeners counts the TCP sockets listening on port (from /proc/net/tcp
// and tcp6), or returns 0 where those are not available.
func listeners(port int) int {
	n := 0
	suffix := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local_address rem_address st ...; st 0A is LISTEN.
			fs := strings.Fields(line)
			if len(fs) > 3 && strings.HasSuffix(fs[1], suffix) && fs[3] == "0A" {
				n++
			}
		}
	}
	return n
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

// waitFor polls cond every interval until it holds, and fails the test if
// it does not within limit: for conditions that have no event to wait on.
func waitFor(t testing.TB, limit, interval time.Duration, what string, cond func() bool) {
	t.Helper()
	if !eventually(limit, interval, cond) {
		t.Fatalf("still waiting after %v for %s", limit, what)
	}
}

// eventually polls cond every interval until it holds (true) or limit has
// passed (false).
func eventually(limit, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
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
	// CLI, the standard modules and this plugin), so every test can start
	// Caddy processes of its own in milliseconds, without xcaddy.
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

// runtimeStats returns the process's goroutine count and its heap right
// after a garbage collection, from Caddy's admin /debug/pprof.
func (p *caddyProcess) runtimeStats(t *testing.T) (goroutines int, heap uint64) {
	t.Helper()
	get := func(path string) string {
		resp, err := testClient.Get(p.Admin + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: status %d", path, resp.StatusCode)
		}
		return string(b)
	}
	// gc=1 collects first; debug=1 ends with the runtime.MemStats.
	h := get("/debug/pprof/heap?gc=1&debug=1")
	i := strings.Index(h, "\n# HeapAlloc = ")
	if i < 0 {
		t.Fatalf("no HeapAlloc in the heap profile")
	}
	if _, err := fmt.Sscanf(h[i+1:], "# HeapAlloc = %d", &heap); err != nil {
		t.Fatalf("heap profile: %v", err)
	}
	if _, err := fmt.Sscanf(get("/debug/pprof/goroutine?debug=1"), "goroutine profile: total %d", &goroutines); err != nil {
		t.Fatalf("goroutine profile: %v", err)
	}
	return goroutines, heap
}

// startCaddyProcess runs Caddy in a child process with the given Caddyfile
// body for one site, metrics on, and its logs in the process output (p.out).
// Use it for a fleet (several instances sharing Redis) and to scrape
// metrics; startCaddy is the same with logs in a file and reloads.
func startCaddyProcess(t *testing.T, site string) *caddyProcess {
	t.Helper()
	return launchCaddy(t, nil, func(port, admin int) string {
		return fmt.Sprintf(`{
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
	})
}

// launchCaddy starts Caddy in a child process with the Caddyfile that
// caddyfile returns for two free loopback ports (site, admin), and returns
// once Caddy has loaded it and serves. A port found free can be taken by
// another process before the child binds it: the child then exits at once,
// or shares the port (see tryLaunchCaddy), and launchCaddy tries new ports.
func launchCaddy(t *testing.T, env []string, caddyfile func(port, admin int) string) *caddyProcess {
	t.Helper()
	for attempt := 1; ; attempt++ {
		p, err := tryLaunchCaddy(t, env, caddyfile)
		if err == nil {
			return p
		}
		// A child can also exit at start with status 1 and no output at all
		// (seen about once in a few thousand starts on a loaded machine,
		// cause unknown: Caddy's CLI exits before its logger is set up).
		// Nothing was served yet, so starting another is safe; it is
		// logged, and a child that keeps failing still fails the test.
		retriable := strings.Contains(err.Error(), "address already in use") || strings.Contains(err.Error(), "exited at start")
		if !retriable || attempt == 5 {
			t.Fatalf("caddy process did not start: %v", err)
		}
		t.Logf("caddy process did not start (retrying on other ports): %v", err)
	}
}

// tryLaunchCaddy waits for the child's pingback: "caddy run --pingback ADDR"
// dials ADDR and echoes what it read on stdin once its initial config is
// running (the handshake "caddy start" uses).
func tryLaunchCaddy(t *testing.T, env []string, caddyfile func(port, admin int) string) (*caddyProcess, error) {
	t.Helper()
	port, admin := freePort(t), freePort(t)
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile(port, admin)), 0o600); err != nil {
		t.Fatal(err)
	}
	ping, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ping.Close()
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}

	p := &caddyProcess{Base: fmt.Sprintf("http://127.0.0.1:%d", port), Admin: fmt.Sprintf("http://127.0.0.1:%d", admin), out: &lockedBuffer{b: new(bytes.Buffer)}}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(append(os.Environ(), env...), runAsCaddyEnv+"=1",
		runAsCaddyArgsEnv+"=run --config "+path+" --adapter caddyfile --pingback "+ping.Addr().String())
	p.cmd.Stdin = bytes.NewReader(secret)
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
		// Under -race the child is race-instrumented too; it reports on
		// its stderr, and is killed before it could exit with status 66.
		if o := out.String(); strings.Contains(o, "WARNING: DATA RACE") {
			t.Errorf("the caddy process reported a data race:\n%s", o)
		} else if t.Failed() {
			t.Logf("caddy process output:\n%s", o)
		}
	})

	pinged := make(chan error, 1)
	go func() {
		c, err := ping.Accept()
		if err != nil {
			pinged <- err
			return
		}
		defer c.Close()
		got, err := io.ReadAll(io.LimitReader(c, int64(len(secret))+1))
		if err == nil && !bytes.Equal(got, secret) {
			err = fmt.Errorf("pingback sent %x, want %x", got, secret)
		}
		pinged <- err
	}()
	select {
	case err := <-pinged:
		if err != nil {
			t.Fatalf("caddy process pingback: %v", err)
		}
		// Caddy binds with SO_REUSEPORT, so a process that took one of
		// the ports meanwhile shares it instead of making the bind fail.
		for _, port := range []int{port, admin} {
			if n := listeners(port); n > 1 {
				_ = p.cmd.Process.Kill()
				<-done
				return nil, fmt.Errorf("address already in use: %d sockets listen on port %d", n, port)
			}
		}
		return p, nil
	case <-done:
		return nil, fmt.Errorf("exited at start (%v):\n%s", p.cmd.ProcessState, out.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("caddy process did not start within 60s:\n%s", out.String())
		return nil, nil
	}
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
