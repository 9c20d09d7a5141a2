package caddymodule

import (
	"sync/atomic"

	"go.uber.org/zap/zapcore"
)

// reloadableCore is the log core of a shared validator. The validator outlives
// the config that built it (it is pooled across reloads), but Caddy closes a
// config's log writers when the config is unloaded: each Provision points the
// core at the current config's logging, so the breaker, JWKS and cache lines
// keep reaching the operator.
//
// fields are added to every line. They cannot be bound with zap's With,
// which would bind them to the core current at that moment.
type reloadableCore struct {
	cur    atomic.Pointer[zapcore.Core]
	fields []zapcore.Field
}

func newReloadableCore(c zapcore.Core) *reloadableCore {
	r := new(reloadableCore)
	r.set(c)
	return r
}

func (r *reloadableCore) set(c zapcore.Core) { r.cur.Store(&c) }
func (r *reloadableCore) core() zapcore.Core { return *r.cur.Load() }

func (r *reloadableCore) Enabled(l zapcore.Level) bool { return r.core().Enabled(l) }

// With binds fields to the current core: loggers derived with With are meant
// for short-lived use. Named loggers (what the validator keeps) stay live.
func (r *reloadableCore) With(f []zapcore.Field) zapcore.Core {
	return r.core().With(append(r.fields[:len(r.fields):len(r.fields)], f...))
}

func (r *reloadableCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	c := r.core()
	if len(r.fields) > 0 {
		if !c.Enabled(e.Level) {
			return ce // no With (and its copies) for a line nobody logs
		}
		// Bound to the current core for this one line: the core's own
		// Check still decides (Caddy's include/exclude filters per log).
		c = c.With(r.fields)
	}
	return c.Check(e, ce)
}

func (r *reloadableCore) Write(e zapcore.Entry, f []zapcore.Field) error {
	if len(r.fields) > 0 {
		f = append(r.fields[:len(r.fields):len(r.fields)], f...)
	}
	return r.core().Write(e, f)
}

func (r *reloadableCore) Sync() error { return r.core().Sync() }

var _ zapcore.Core = (*reloadableCore)(nil)
