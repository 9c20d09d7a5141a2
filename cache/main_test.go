package cache

import (
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
)

func TestMain(m *testing.M) {
	// go-redis logs every failed dial to stderr through a process-wide
	// logger; the outage tests provoke hundreds. Our own (zap) logging is
	// what the tests look at.
	redis.SetLogger(&logging.VoidLogger{})
	os.Exit(m.Run())
}
