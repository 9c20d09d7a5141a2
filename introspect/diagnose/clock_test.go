package diagnose

import (
	"testing"
	"time"
)

func TestDoctorClockOffsetArithmetic(t *testing.T) {
	base := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	// The server's Date is truncated to the second: a server exactly in
	// step answers 12:00:00 for 12:00:00.700.
	s := dateSample{date: base, start: base.Add(600 * time.Millisecond), end: base.Add(800 * time.Millisecond)}
	if off := s.offset(); off < -300*time.Millisecond || off > 300*time.Millisecond {
		t.Errorf("offset %v, want about 0", off)
	}
	s.date = base.Add(-45 * time.Second)
	if off := s.offset().Round(time.Second); off != -45*time.Second {
		t.Errorf("offset %v, want -45s", off)
	}
}

func TestDoctorClockSamplePreference(t *testing.T) {
	base := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	r := dateRecorder{samples: []dateSample{
		{url: "404", status: 404, date: base, start: base, end: base.Add(time.Millisecond)},
		{url: "slow", status: 200, date: base, start: base, end: base.Add(3 * time.Second)},
		{url: "ok", status: 200, date: base, start: base, end: base.Add(2 * time.Millisecond)},
	}}
	if s, _ := r.best(); s.url != "ok" {
		t.Errorf("best = %s, want the first quick successful answer", s.url)
	}
	r.samples = r.samples[:2]
	if s, _ := r.best(); s.url != "404" {
		t.Errorf("best = %s, want the quick 404 over the slow 200", s.url)
	}
}
