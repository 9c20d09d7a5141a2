package diagnose

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/tokengate/tokengate/introspect"
)

// Clock offsets up to clockOK pass silently (the Date header has a
// resolution of one second); up to the leeway they warn, beyond it they
// fail: valid JWTs then fail exp/nbf/iat, and servers refuse client
// assertions. clockFail caps the leeway: more than most authorization
// servers allow on a client assertion's iat.
const (
	clockOK   = 2 * time.Second
	clockFail = 30 * time.Second
	// clockProbeTimeout bounds the doctor's own request for a Date, made
	// only when none of the gateway's calls brought one back: a server
	// that takes longer gives no usable reading anyway.
	clockProbeTimeout = 3 * time.Second
)

// dateRecorder collects Date headers of the authorization server's answers,
// with when each request left and its answer came back.
type dateRecorder struct {
	mu      sync.Mutex
	now     func() time.Time
	samples []dateSample
}

type dateSample struct {
	url        string
	status     int
	date       time.Time
	start, end time.Time
}

// offset is the server's clock minus ours: the Date header against the
// middle of the round trip, plus half a second because Date is truncated to
// the second.
func (s dateSample) offset() time.Duration {
	mid := s.start.Add(s.end.Sub(s.start) / 2)
	return s.date.Add(500 * time.Millisecond).Sub(mid)
}

func (r *dateRecorder) add(s dateSample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples = append(r.samples, s)
}

func (r *dateRecorder) clock() func() time.Time {
	if r.now == nil {
		return time.Now
	}
	return r.now
}

// best is the first sample (discovery before introspection before the
// doctor's own probe) whose round trip took under a second, the Date
// header's own resolution, preferring successful answers (any answer's Date
// would do, but "Date of" a 404 would puzzle a reader); failing that, the
// one with the shortest round trip.
func (r *dateRecorder) best() (dateSample, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) == 0 {
		return dateSample{}, false
	}
	for _, okOnly := range []bool{true, false} {
		for _, s := range r.samples {
			if s.end.Sub(s.start) < time.Second && (!okOnly || s.status < 400) {
				return s, true
			}
		}
	}
	b := r.samples[0]
	for _, s := range r.samples[1:] {
		if s.end.Sub(s.start) < b.end.Sub(b.start) {
			b = s
		}
	}
	return b, true
}

// client returns a copy of c whose transport records Date headers.
func (r *dateRecorder) client(c *http.Client) *http.Client {
	if c == nil {
		c = introspect.NewHTTPClient(stepTimeout)
	}
	cp := *c
	base := cp.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	cp.Transport = &recordingTransport{base: base, rec: r}
	return &cp
}

type recordingTransport struct {
	base http.RoundTripper
	rec  *dateRecorder
}

func (t *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	now := t.rec.clock()
	start := now()
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	end := now()
	if d, perr := http.ParseTime(resp.Header.Get("Date")); perr == nil {
		// The query and credentials in a URL are nobody's business in a
		// report.
		u := *req.URL
		u.RawQuery, u.User = "", nil
		t.rec.add(dateSample{url: u.String(), status: resp.StatusCode, date: d, start: start, end: end})
	}
	return resp, nil
}

// probe asks the issuer for its Date when none of the gateway's own calls
// brought one back (keys from a file or a jwks_url, a failed discovery):
// JWT time checks depend on this host's clock agreeing with the issuer's
// even when the gateway never calls it.
func (d *doctor) probeClock() {
	if d.cfg.Issuer == "" {
		return
	}
	ctx, cancel := context.WithTimeout(d.ctx, clockProbeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, d.cfg.Issuer, nil)
	if err != nil {
		return
	}
	resp, err := d.dates.client(introspect.NewHTTPClient(clockProbeTimeout)).Do(req)
	if err == nil {
		_ = resp.Body.Close()
	}
}

func (d *doctor) checkClock() {
	if d.skipAll != "" {
		d.skip(CheckClock, d.skipAll)
		return
	}
	s, ok := d.dates.best()
	if !ok {
		d.probeClock()
		s, ok = d.dates.best()
	}
	if !ok {
		d.skip(CheckClock, "skipped: no answer from the authorization server carried a Date header")
		return
	}
	offset := s.offset()
	// The leeway is the skew every time check tolerates (exp, nbf, iat,
	// on either path).
	limit := clockFail
	if l := d.cfg.Leeway; l > 0 && l < limit {
		limit = l
	}
	rounded := offset.Round(time.Second)
	data := map[string]any{"offset_seconds": math.Round(offset.Seconds()*10) / 10, "source": s.url, "fail_above_seconds": limit.Seconds()}
	var detail string
	switch {
	case rounded > 0:
		detail = fmt.Sprintf("offset %s: the authorization server's clock is %s ahead of this host's (Date of %s)", signed(rounded), rounded, s.url)
	case rounded < 0:
		detail = fmt.Sprintf("offset %s: the authorization server's clock is %s behind this host's (Date of %s)", signed(rounded), -rounded, s.url)
	default:
		detail = fmt.Sprintf("offset %s: in step with the authorization server (Date of %s)", signed(rounded), s.url)
	}
	abs := offset.Abs()
	const ntp = "synchronise this host's clock with NTP (timedatectl status, chronyc tracking), and the authorization server's"
	switch {
	case abs > limit:
		d.add(CheckClock, StatusFail, detail, fmt.Sprintf("%s: beyond %s, valid JWTs fail exp/nbf/iat and the server refuses client assertions ('iat' timestamp check failed)", ntp, limit), data)
	case abs > clockOK:
		d.add(CheckClock, StatusWarn, detail, fmt.Sprintf("%s: tolerated up to %s, but drifting clocks break JWT and client-assertion time checks", ntp, limit), data)
	default:
		d.add(CheckClock, StatusPass, detail, "", data)
	}
}

func signed(d time.Duration) string {
	if d >= 0 {
		return "+" + d.String()
	}
	return d.String()
}
