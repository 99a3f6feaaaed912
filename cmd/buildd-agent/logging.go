package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/buildd-agent/buildd-agent/agent"
	"github.com/buildd-agent/buildd-agent/internal/redact"
)

// newLogger makes the agent's own log per [log]: text or JSON lines on w
// (stderr: the journal under systemd, which adds its own timestamps but
// keeps ours for logs read elsewhere). Every message and attribute goes
// through redact.String, so that no URL credential or query token reaches
// the log whichever package logs it and however the URL got there (an
// error quoting it, a Location header, a URL net/url cannot parse).
func newLogger(cfg agent.LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Level)); err != nil {
		level = slog.LevelInfo // validated by the config; belt and braces
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(redactingHandler{slog.NewJSONHandler(w, opts)})
	}
	return slog.New(redactingHandler{slog.NewTextHandler(w, opts)})
}

// redactingHandler redacts the message and every attribute of a record
// before its handler formats it.
type redactingHandler struct{ h slog.Handler }

func (r redactingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return r.h.Enabled(ctx, l)
}

func (r redactingHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, redact.String(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return r.h.Handle(ctx, out)
}

func (r redactingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = redactAttr(a)
	}
	return redactingHandler{r.h.WithAttrs(red)}
}

func (r redactingHandler) WithGroup(name string) slog.Handler {
	return redactingHandler{r.h.WithGroup(name)}
}

// redactAttr redacts strings, errors, Stringers and groups; numbers,
// times and the like cannot hold a URL and pass as they are.
func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, redact.String(v.String()))
	case slog.KindGroup:
		g := v.Group()
		red := make([]slog.Attr, len(g))
		for i, x := range g {
			red[i] = redactAttr(x)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(red...)}
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, redact.String(x.Error()))
		case fmt.Stringer:
			return slog.String(a.Key, redact.String(x.String()))
		case []string:
			red := make([]string, len(x))
			for i, s := range x {
				red[i] = redact.String(s)
			}
			return slog.Any(a.Key, red)
		default:
			return slog.String(a.Key, redact.String(fmt.Sprint(x)))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
