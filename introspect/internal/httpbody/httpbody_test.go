package httpbody

import (
	"errors"
	"strings"
	"testing"
)

func TestReadFailsPastTheBoundInsteadOfTruncating(t *testing.T) {
	if b, err := Read(strings.NewReader("12345"), 5); err != nil || string(b) != "12345" {
		t.Errorf("at the bound: %q, %v", b, err)
	}
	if _, err := Read(strings.NewReader("123456"), 5); !errors.Is(err, ErrTooLarge) {
		t.Errorf("past the bound: %v, want ErrTooLarge", err)
	}
}

func TestIsJSON(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/json":                  true,
		"application/json; charset=utf-8":   true,
		"Application/JSON":                  true,
		"application/jwk-set+json":          true,
		"application/problem+json":          true,
		"text/html; charset=utf-8":          false,
		"application/x-www-form-urlencoded": false,
		"+json":                             false,
		"":                                  false,
		"application/json; charset":         false, // malformed parameter
	} {
		if got := IsJSON(ct); got != want {
			t.Errorf("IsJSON(%q) = %v, want %v", ct, got, want)
		}
	}
}
