//go:build race

package cache

// raceEnabled: under the race detector sync.Pool deliberately drops items,
// so pooled HMAC state is re-created and allocation counts are meaningless.
const raceEnabled = true
