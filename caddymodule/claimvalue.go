package caddymodule

import (
	"encoding/json"
	"strconv"
	"strings"
)

// claimString renders a claim for a placeholder or header: strings as they
// are, numbers in their JSON form, arrays of scalars comma-separated, and
// objects as JSON.
func claimString(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case json.Number:
		return t.String()
	case bool:
		return strconv.FormatBool(t)
	case nil:
		return ""
	case []any:
		parts := make([]string, 0, len(t))
		for _, e := range t {
			switch e.(type) {
			case map[string]any, []any:
				b, _ := json.Marshal(t)
				return string(b)
			}
			parts = append(parts, claimString(e))
		}
		return strings.Join(parts, ",")
	default:
		b, _ := json.Marshal(t)
		return string(b)
	}
}

// headerSafe drops control characters so a claim can never split or forge
// a header line.
func headerSafe(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 && s[i] != '\t' || s[i] == 0x7f {
			return strings.Map(func(r rune) rune {
				if r < 0x20 && r != '\t' || r == 0x7f {
					return -1
				}
				return r
			}, s)
		}
	}
	return s
}
