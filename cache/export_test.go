package cache

// withoutFleetEvictions returns a copy of rc for an instance that never hears the fleet's
// evictions, so that a test can make its Redis write happen strictly after
// another instance's eviction, with no Pub/Sub message racing it.
func withoutFleetEvictions(rc RedisConfig) *RedisConfig {
	rc.noSubscribe = true
	return &rc
}
