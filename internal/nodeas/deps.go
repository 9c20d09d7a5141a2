package nodeas

// Finding node and npm, and installing the pinned npm dependencies once:
// what a Server needs before it can start.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// tailBuffer keeps the last max bytes written to it; it is written by
// os/exec's copying goroutine and read by the test.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (w *tailBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	if over := len(w.b) - w.max; over > 0 {
		w.b = append(w.b[:0], w.b[over:]...)
	}
	return len(p), nil
}

func (w *tailBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.b)
}

// --- node and npm ------------------------------------------------------------

var (
	depsOnce    sync.Once
	depsNode    string
	depsDir     string
	depsMissing string // why node/npm cannot be used: skip (fail under CI)
	depsErr     error  // anything else: fail
)

// requireDeps finds node and makes sure node_modules is installed, once per
// test binary; it skips the test (fails it under CI=true) when node or npm
// is missing, and fails it when the installation fails.
func requireDeps(t testing.TB) (node, dir string) {
	t.Helper()
	depsOnce.Do(func() { depsNode, depsDir, depsMissing, depsErr = prepare() })
	if depsErr != nil {
		t.Fatalf("nodeas: %v", depsErr)
	}
	if depsMissing != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("nodeas: %s; node-oidc-provider tests cannot run (CI=true: failing instead of skipping)", depsMissing)
		}
		t.Skipf("nodeas: %s; skipping node-oidc-provider test", depsMissing)
	}
	return depsNode, depsDir
}

func prepare() (node, dir, missing string, err error) {
	// The package directory, where server.mjs and package.json are: tests of
	// other packages run in their own directories.
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", "", "", errors.New("cannot locate the nodeas package directory")
	}
	dir = filepath.Dir(file)
	if _, err := os.Stat(filepath.Join(dir, "server.mjs")); err != nil {
		return "", "", "", fmt.Errorf("server.mjs not found next to nodeas.go (built with -trimpath?): %w", err)
	}

	node, err = exec.LookPath("node")
	if err != nil {
		return "", "", "node not found on PATH", nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, "-p", "process.versions.node").Output()
	if err != nil {
		return "", "", "", fmt.Errorf("%s -p process.versions.node: %v", node, err)
	}
	v := strings.TrimSpace(string(out))
	if !nodeVersionOK(v) {
		return "", "", fmt.Sprintf("node %s is too old (oidc-provider 9 needs >= 20.18)", v), nil
	}

	if installed(dir) {
		return node, dir, "", nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", "", fmt.Sprintf("npm not found on PATH (needed once, to install %s/node_modules)", dir), nil
	}
	if err := npmInstall(npm, dir); err != nil {
		return "", "", "", err
	}
	return node, dir, "", nil
}

func nodeVersionOK(v string) bool {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return major > 20 || major == 20 && minor >= 18
}

// installed reports whether node_modules holds exactly the versions
// package.json pins, so a checkout that changed the pin reinstalls instead of
// silently running the old version.
func installed(dir string) bool {
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil || json.Unmarshal(b, &pkg) != nil {
		return false
	}
	for name, want := range pkg.Dependencies {
		var dep struct {
			Version string `json:"version"`
		}
		b, err := os.ReadFile(filepath.Join(dir, "node_modules", name, "package.json"))
		if err != nil || json.Unmarshal(b, &dep) != nil || dep.Version != want {
			return false
		}
	}
	return true
}

// npmInstall installs package.json's dependencies into dir/node_modules.
// Several test binaries (go test ./... runs packages in parallel) may get
// here at once, so without any lock file: each installs into its own
// temporary directory and renames the result into place; a rename is atomic,
// and whoever loses the race uses the winner's copy.
func npmInstall(npm, dir string) error {
	tmp, err := os.MkdirTemp(dir, ".npm-install-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	b, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "package.json"), b, 0o644); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "install",
		"--no-package-lock", "--no-audit", "--no-fund",
		"--no-update-notifier", "--no-progress", "--loglevel=error")
	cmd.Dir = tmp
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("timed out after 3m (is the npm registry reachable?): %w", err)
		}
		return fmt.Errorf("npm install for %s failed: %v\n%s", dir, err, tail(out.String(), 4000))
	}

	if installed(dir) {
		return nil // another test binary finished first
	}
	// A stale node_modules (other pinned version) is moved into tmp, to be
	// removed with it.
	nm := filepath.Join(dir, "node_modules")
	if _, err := os.Stat(nm); err == nil {
		if err := os.Rename(nm, filepath.Join(tmp, "stale-node_modules")); err != nil && !installed(dir) {
			return fmt.Errorf("replace %s: %w", nm, err)
		}
	}
	if err := os.Rename(filepath.Join(tmp, "node_modules"), nm); err != nil && !installed(dir) {
		return fmt.Errorf("install %s: %w", nm, err)
	}
	if !installed(dir) {
		return fmt.Errorf("npm install for %s finished, but node_modules does not hold the pinned versions", dir)
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
