// Package diagnose is the doctor: it checks a validator configuration
// against its authorization server, and explains what the gateway would
// decide for a token, with the validator's own code. Each block gets one
// introspect.New, so discovery runs once and the key set is fetched once,
// exactly as when the gateway starts; what the block needs (discovery, which
// endpoints, which keys) is read from the validator and its Config, never
// worked out again here.
//
// It knows nothing of Caddy: the glue finds the blocks in its config, maps
// each to a Target (an introspect.Config plus the route's policy), runs Run
// on each, and prints the Report, whose text and JSON forms are defined here
// with the model so that every front end writes the same documented format.
package diagnose

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Version is the "version" of the JSON report; it changes only when a field
// is removed or changes meaning.
const Version = 1

// Status is a check's outcome. Only StatusFail makes a block (and the
// report) fail.
type Status string

// The check statuses.
const (
	StatusPass Status = "pass"
	StatusWarn Status = "warn"
	StatusFail Status = "fail"
	StatusSkip Status = "skip"
)

// Check names, in the order they run (also the JSON "name" values).
const (
	CheckConfig          = "config"
	CheckDiscovery       = "discovery"
	CheckJWKS            = "jwks"
	CheckCredentials     = "credentials"
	CheckClock           = "clock"
	CheckTokenSyntax     = "token_syntax"
	CheckTokenValidation = "token_validation"
	CheckTokenPolicy     = "token_policy"
	CheckDecision        = "decision"
)

// Report is the whole result; its JSON form is the doctor's --json output.
type Report struct {
	Version    int      `json:"version"`
	ConfigFile string   `json:"config_file"`
	Adapter    string   `json:"adapter"`
	OK         bool     `json:"ok"`
	Error      string   `json:"error,omitempty"`
	Summary    Summary  `json:"summary"`
	Blocks     []*Block `json:"blocks"`
}

// Summary counts the checks of every block by status.
type Summary struct {
	Pass int `json:"pass"`
	Warn int `json:"warn"`
	Fail int `json:"fail"`
	Skip int `json:"skip"`
}

// Where locates a block in its config.
type Where struct {
	// Name is how the report names the block, e.g. "<server>#<index>".
	Name   string `json:"name"`
	Server string `json:"server"`
	Index  int    `json:"index"`
	// Path is where the block is in the config (a JSON pointer).
	Path string `json:"path"`
	// Hosts and Paths are the request matchers around the block.
	Hosts []string `json:"hosts,omitempty"`
	Paths []string `json:"paths,omitempty"`
}

// Block is the result for one validator configuration.
type Block struct {
	Where
	Issuer string `json:"issuer,omitempty"`
	OK     bool   `json:"ok"`
	// TokenFingerprint identifies the explained token in the gateway's
	// logs; the token itself is never part of a report.
	TokenFingerprint string   `json:"token_fingerprint,omitempty"`
	Checks           []*Check `json:"checks"`
}

// Check is one line of the report.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	// Detail says what was found, on one line.
	Detail string `json:"detail"`
	// Hint says what to check; set on failures and warnings.
	Hint string `json:"hint,omitempty"`
	// Data holds the check's findings for scripts (URLs, counts, offsets,
	// the decision's status and error code...).
	Data map[string]any `json:"data,omitempty"`
}

// NewReport starts an empty report about configFile (as read with adapter).
func NewReport(configFile, adapter string) *Report {
	return &Report{Version: Version, ConfigFile: configFile, Adapter: adapter, Blocks: []*Block{}}
}

// Fail records why no block could be checked (the config could not be
// loaded, or has no block): the report then fails.
func (r *Report) Fail(reason string) {
	r.Error = reason
	r.OK = false
}

// Add appends a checked block and counts its checks. The report is OK when
// it has at least one block, no error, and no failed check.
func (r *Report) Add(b *Block) {
	r.Blocks = append(r.Blocks, b)
	for _, c := range b.Checks {
		switch c.Status {
		case StatusPass:
			r.Summary.Pass++
		case StatusWarn:
			r.Summary.Warn++
		case StatusFail:
			r.Summary.Fail++
		case StatusSkip:
			r.Summary.Skip++
		}
	}
	r.OK = r.Error == ""
	for _, b := range r.Blocks {
		r.OK = r.OK && b.OK
	}
}

// WriteJSON writes the JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteText writes the human-readable report: one line per check, hints on
// failures and warnings, and a summary naming what failed.
func (r *Report) WriteText(w io.Writer) {
	src := r.ConfigFile
	if src == "" {
		src = "(no config file)"
	}
	if r.Adapter != "" {
		src += " (" + r.Adapter + " adapter)"
	}
	if r.Error != "" {
		fmt.Fprintf(w, "tokengate doctor: %s\n  ✘ %s\n", src, r.Error)
		return
	}
	fmt.Fprintf(w, "tokengate doctor: %s, %s\n", src, plural(len(r.Blocks), "bearer_auth block"))
	width := 0
	for _, b := range r.Blocks {
		for _, c := range b.Checks {
			width = max(width, len(label(c.Name)))
		}
	}
	var failed []string
	for _, b := range r.Blocks {
		fmt.Fprintf(w, "\n%s", b.Name)
		if len(b.Hosts) > 0 || len(b.Paths) > 0 {
			fmt.Fprintf(w, "  %s", strings.TrimSpace(strings.Join(b.Hosts, " ")+" "+strings.Join(b.Paths, " ")))
		}
		if b.Issuer != "" {
			fmt.Fprintf(w, "  issuer %s", b.Issuer)
		}
		fmt.Fprintln(w)
		if b.TokenFingerprint != "" {
			fmt.Fprintf(w, "  (token fingerprint %s)\n", b.TokenFingerprint)
		}
		for _, c := range b.Checks {
			line := fmt.Sprintf("  %s %-*s  %s", statusMark(c.Status), width, label(c.Name), c.Detail)
			if c.Hint != "" && (c.Status == StatusFail || c.Status == StatusWarn) {
				line += " — check: " + c.Hint
			}
			fmt.Fprintln(w, line)
			if c.Status == StatusFail {
				failed = append(failed, b.Name+" "+label(c.Name))
			}
		}
	}
	fmt.Fprintln(w)
	s := r.Summary
	counts := fmt.Sprintf("%d passed, %d warnings, %d failed, %d skipped", s.Pass, s.Warn, s.Fail, s.Skip)
	if r.OK {
		fmt.Fprintf(w, "ok: %s\n", counts)
	} else {
		fmt.Fprintf(w, "FAILED: %s (%s)\n", counts, strings.Join(failed, ", "))
	}
}

func label(name string) string { return strings.ReplaceAll(name, "_", " ") }

func statusMark(s Status) string {
	switch s {
	case StatusPass:
		return "✔"
	case StatusWarn:
		return "!"
	case StatusFail:
		return "✘"
	}
	return "-"
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
