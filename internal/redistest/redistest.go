// Package redistest runs a real redis-server on loopback for tests, so that
// the shared cache tier is tested against Redis itself rather than a fake.
package redistest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is a redis-server child process bound to 127.0.0.1.
type Server struct {
	bin   string
	port  int
	dir   string
	extra []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has been reaped
}

var installOnce sync.Once

// lookPath finds redis-server. On CI (CI=true) or when running as root it
// installs the Debian package once per test binary if it is missing; a CI
// job must not silently skip the shared-tier tests, a developer's laptop may.
func lookPath(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	ci := os.Getenv("CI") == "true"
	if ci || os.Geteuid() == 0 {
		installOnce.Do(func() {
			for _, args := range [][]string{{"update"}, {"install", "-y", "redis-server"}} {
				cmd := exec.Command("apt-get", args...)
				cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Logf("apt-get %v: %v\n%s", args, err, out)
					return
				}
			}
		})
		if p, err := exec.LookPath("redis-server"); err == nil {
			return p
		}
	}
	if ci {
		t.Fatal("redis-server not found on PATH (and apt-get install failed); the shared cache tier cannot be tested")
	}
	t.Skip("redis-server not found on PATH; skipping Redis-backed test")
	return ""
}

// Start starts redis-server on a free loopback port and waits until it
// answers PING. The server is killed when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartArgs(t)
}

// StartArgs is Start with extra redis-server arguments, for example
// "--cluster-enabled", "yes" or "--requirepass", "pw". Restart reuses them.
// The working directory (--dir) is a per-test temporary directory.
func StartArgs(t testing.TB, args ...string) *Server {
	t.Helper()
	s := &Server{bin: lookPath(t), dir: t.TempDir(), extra: args}
	t.Cleanup(s.Kill)
	// A port picked by listening on :0 can be taken by someone else before
	// redis binds it; retry with a new port in that case.
	var err error
	for range 5 {
		s.port, err = freePort()
		if err != nil {
			t.Fatalf("redistest: free port: %v", err)
		}
		if err = s.start(); err == nil {
			return s
		}
	}
	t.Fatalf("redistest: %v", err)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &bytes.Buffer{}
	args := append([]string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
	}, s.extra...)
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ping(s.addr()) == nil {
			s.cmd, s.exited = cmd, exited
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server on port %d exited:\n%s", s.port, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	_ = cmd.Process.Kill()
	<-exited
	return fmt.Errorf("redis-server on port %d did not answer PING within 10s:\n%s", s.port, out.String())
}

// ping speaks just enough RESP to check the server is ready.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	// A server started with --requirepass answers -NOAUTH: it is up.
	if line != "+PONG\r\n" && !strings.HasPrefix(line, "-NOAUTH") {
		return fmt.Errorf("unexpected PING reply %q", line)
	}
	return nil
}

func (s *Server) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port returns the TCP port.
func (s *Server) Port() int { return s.port }

// Dir returns the server's working directory.
func (s *Server) Dir() string { return s.dir }

// Addr returns host:port.
func (s *Server) Addr() string { return s.addr() }

// URL returns a redis:// URL for database 0.
func (s *Server) URL() string { return "redis://" + s.addr() + "/0" }

// Kill stops the server with SIGKILL (no shutdown, no goodbye to clients),
// the harshest outage a client can see. It is a no-op if not running.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	// Wait until the process is reaped, so that the port is free for Restart.
	<-s.exited
	s.cmd, s.exited = nil, nil
}

// Restart starts a fresh (empty) server on the same port.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	var err error
	// The old process may take a moment to release the port.
	for range 50 {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("redistest: restart: %v", err)
}
