package claims

import (
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func testDecision(t *testing.T) *Decision {
	t.Helper()
	obj, err := ParseStrictObject([]byte(`{"iss":"https://as.example.com","sub":"alice","client_id":"app","aud":"api","scope":"read write","exp":4102444800}`))
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDecision(obj, "jwt")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDecisionMemoBuildsOncePerDecision(t *testing.T) {
	d := testDecision(t)
	var builds atomic.Int32
	build := func(d *Decision) any { builds.Add(1); return d.UserID() + "!" }
	var wg sync.WaitGroup
	got := make([]any, 8)
	for i := range got {
		wg.Add(1)
		go func() { defer wg.Done(); got[i] = d.Memo(build) }()
	}
	wg.Wait()
	for range 3 {
		got = append(got, d.Memo(build))
	}
	for _, g := range got {
		if g != got[0] || g != d.Subject()+"!" {
			t.Fatalf("Memo returned %v and %v", got[0], g)
		}
	}
	if n := builds.Load(); n < 1 || n > 8 {
		t.Fatalf("build ran %d times for 8 concurrent first callers", n)
	}
	before := builds.Load()
	d.Memo(build)
	if builds.Load() != before {
		t.Fatal("build ran again after the memo was set")
	}
	// The memo is not part of what is cached in Redis.
	b, err := json.Marshal(&Verdict{Decision: d})
	if err != nil || strings.Contains(string(b), "memo") {
		t.Fatalf("JSON %s, %v", b, err)
	}
}
