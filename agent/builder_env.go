package agent

// What a build's manager gets from the agent (builders.Env): the build
// log writer, the settings, targets the agent tracks for abort, results
// stored into the file cache within the limits, and status extras.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/buildd-agent/buildd-agent/builders"
	"github.com/buildd-agent/buildd-agent/builders/target"
)

// buildWriter is the build log as one build sees it: once the build is
// detached (abandoned after abort, or cleaned), its writes are dropped so
// that they cannot land in a later build's log.
type buildWriter struct {
	bd  *build
	log io.Writer
}

func (w *buildWriter) Write(p []byte) (int, error) {
	if w.bd.detached.Load() {
		return len(p), nil
	}
	return w.log.Write(p)
}

// active reports whether bd still owns the builder and is running. b.mu held.
func (b *Builder) active(bd *build) bool {
	return b.cur == bd && !bd.detached.Load() && (b.state == BuilderBuilding || b.state == BuilderAborting)
}

func (b *Builder) newEnv(bd *build, w io.Writer) *builders.Env {
	return &builders.Env{
		Log: w,
		AddSecret: func(s string) {
			if !bd.detached.Load() && s != "" {
				b.log.AddSecret(s)
			}
		},
		NewTarget: func(ctx context.Context, backend string, spec target.Spec) (target.Target, error) {
			return b.newTarget(ctx, bd, w, backend, spec)
		},
		AddWaitingFile: func(name string, r io.Reader) (string, error) {
			return b.addWaitingFile(bd, name, r)
		},
		SetStatus: func(key string, value any) {
			b.setStatus(bd, key, value)
		},
		Config: b.managerConfig(),
	}
}

// ManagerConfig is the part of cfg the managers read, for a builder of
// arch. The daemon and the local build commands both take it from here,
// so that a setting cannot reach one and not the other.
func ManagerConfig(cfg *Config, arch string) builders.ManagerConfig {
	return builders.ManagerConfig{
		Arch:              arch,
		Backend:           cfg.Builder.Backend,
		ProxyBind:         cfg.Proxy.BindAddress,
		ProxyPort:         cfg.Proxy.Port,
		StateDir:          cfg.Builder.StateDir,
		SnapStoreProxyURL: cfg.Proxy.SnapStore,
		AptProxyURL:       cfg.Proxy.Apt,
		ClamAVDatabaseURL: cfg.Proxy.ClamAVDatabase,
		BuildHome:         cfg.Builder.BuildHome,
		ResultFileBytes:   cfg.Limits.ResultFileBytes,
		SbuildUser:        cfg.Sbuild.User,
		ImageMaxAge:       cfg.LXD.ImageMaxAge.Duration,
		ImageMaxCount:     cfg.LXD.ImageMaxCount,

		TranslationTemplatesResult: cfg.TranslationTemplates.ResultArchive,
	}
}

// managerConfig is ManagerConfig with the limits SIGHUP last applied.
func (b *Builder) managerConfig() builders.ManagerConfig {
	c := ManagerConfig(b.cfg, b.arch)
	c.ResultFileBytes = b.limits.Load().ResultFileBytes
	return c
}

// CheckManagers runs every manager's host check and returns what is
// missing, by manager tag (logged at start).
func (b *Builder) CheckManagers() map[string]error {
	out := map[string]error{}
	for _, tag := range builders.Tags() {
		if err := builders.Check(tag, b.managerConfig()); err != nil {
			out[tag] = err
		}
	}
	return out
}

func (b *Builder) newTarget(ctx context.Context, bd *build, w io.Writer, backend string, spec target.Spec) (target.Target, error) {
	factory, ok := b.targets[backend]
	if !ok {
		have := make([]string, 0, len(b.targets))
		for name := range b.targets {
			have = append(have, name)
		}
		sort.Strings(have)
		configured := strings.Join(have, ", ")
		if configured == "" {
			configured = "none"
		}
		return nil, fmt.Errorf("cannot create %q target: backend not configured (configured: %s)", backend, configured)
	}
	b.mu.Lock()
	running := b.active(bd) && b.state == BuilderBuilding
	b.mu.Unlock()
	if !running {
		return nil, fmt.Errorf("cannot create %q target: the build is being aborted", backend)
	}
	t, err := factory(ctx, spec, target.Options{Log: w, ReadyTimeout: b.cfg.LXD.ReadyTimeout.Duration})
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	bd.targets = append(bd.targets, t)
	aborting := b.cur == bd && b.state != BuilderBuilding
	b.mu.Unlock()
	if aborting {
		// abort() ran while the target was being made: it did not see it.
		go b.killTargets(bd, []target.Target{t})
	}
	return t, nil
}

func (b *Builder) addWaitingFile(bd *build, name string, r io.Reader) (string, error) {
	if err := checkResultName(name); err != nil {
		return "", err
	}
	lim := b.limits.Load()
	b.mu.Lock()
	ok := b.active(bd)
	used := bd.resultBytes
	b.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("cannot add result %q: the build is no longer running", name)
	}
	// The stream is cut one byte past the limit, so that a sparse 1 TiB
	// file costs the limit's worth of reading, never a full disk.
	limit, which := lim.ResultFileBytes, "result_file_bytes"
	if lim.ResultTotalBytes > 0 {
		if left := lim.ResultTotalBytes - used; limit <= 0 || left < limit {
			limit, which = max(left, 0), "result_total_bytes"
		}
	}
	if limit == 0 && which == "result_total_bytes" {
		return "", b.overLimit(bd, name, which, lim.ResultTotalBytes)
	}
	st, err := b.cache.StoreResult(r, limit)
	if errors.Is(err, ErrTooLarge) {
		n := lim.ResultFileBytes
		if which == "result_total_bytes" {
			n = lim.ResultTotalBytes
		}
		return "", b.overLimit(bd, name, which, n)
	}
	if err != nil {
		return "", fmt.Errorf("cannot store result %q: %w", name, err)
	}
	b.mu.Lock()
	if !b.active(bd) {
		b.mu.Unlock()
		if st.Created {
			b.cache.Remove(st.SHA1)
		}
		return "", fmt.Errorf("cannot add result %q: the build is no longer running", name)
	}
	files := make(Struct, 0, len(bd.files)+1)
	for _, m := range bd.files {
		if m.Name != name {
			files = append(files, m)
		}
	}
	bd.files = append(files, Member{name, st.SHA1})
	bd.resultBytes += st.Size
	if st.Created {
		bd.owned[st.SHA1] = st.MTime
	}
	b.mu.Unlock()
	// Journalled so that the sweep after a crash knows which cached
	// files were this build's.
	b.persist()
	return st.SHA1, nil
}

// overLimit records that a result went over a size limit and says so in
// the build log; the result is not stored.
func (b *Builder) overLimit(bd *build, name, key string, n int64) error {
	b.mu.Lock()
	if b.active(bd) {
		bd.overLimit = true
	}
	b.mu.Unlock()
	msg := fmt.Sprintf("Result %s is over this builder's limit of %d bytes ([limits] %s); it is not stored and the build fails.", name, n, key)
	if !bd.detached.Load() {
		fmt.Fprintln(b.log, msg)
	}
	b.logger.Warn("build result over the size limit", "build_id", bd.id, "result", name, "limit", key, "bytes", n)
	return fmt.Errorf("cannot add result %q: %w: over [limits] %s (%d bytes)", name, builders.ErrResultTooLarge, key, n)
}

// reservedStatus are status() keys a manager's extras must not replace.
var reservedStatus = map[string]bool{
	"builder_status": true, "builder_version": true, "build_id": true, "logtail": true,
	"build_status": true, "filemap": true, "dependencies": true,
}

func (b *Builder) setStatus(bd *build, key string, value any) {
	if reservedStatus[key] || key == "" {
		b.logger.Warn("build manager tried to set a reserved status key", "key", key)
		return
	}
	// Refuse what cannot be serialised now, rather than break every
	// later status() call.
	if _, err := appendValue(nil, value, 0); err != nil {
		b.logger.Warn("build manager set an unserialisable status value", "key", key, "error", err)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.active(bd) {
		return
	}
	extras := make(Struct, 0, len(bd.extras)+1)
	replaced := false
	for _, m := range bd.extras {
		if m.Name == key {
			m.Value = value
			replaced = true
		}
		extras = append(extras, m)
	}
	if !replaced {
		extras = append(extras, Member{key, value})
	}
	bd.extras = extras
}
