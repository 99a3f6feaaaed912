package agent

// How a build ends from outside: abort (and its watchdog), clean(), and
// stopping a running build at shutdown.

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/buildd-agent/buildd-agent/builders"
	"github.com/buildd-agent/buildd-agent/builders/target"
)

func (b *Builder) rpcAbort(_ *http.Request, params []any) (any, error) {
	if err := arity("abort", params); err != nil {
		return nil, err
	}
	return b.Abort()
}

// Abort cancels the build's context, kills the processes of every target
// it made, and arms the watchdog: a build whose Run has not returned after
// the abort timeout is abandoned as BUILDERFAIL.
func (b *Builder) Abort() (string, error) {
	b.mu.Lock()
	switch b.state {
	case BuilderAborting:
		b.mu.Unlock()
		b.logger.Info("Builder already ABORTING when asked to abort")
		return BuilderAborting, nil
	case BuilderBuilding:
	default:
		state := b.state
		b.mu.Unlock()
		return "", Faultf("abort: the builder is %s; only a BUILDING build can be aborted", shortState(state))
	}
	bd := b.cur
	b.state = BuilderAborting
	bd.cancel()
	targets := slices.Clone(bd.targets)
	bd.abortTimer = time.AfterFunc(b.abortTimeout, func() { b.abortExpired(bd) })
	b.mu.Unlock()
	b.metrics.aborted()
	b.logger.Info("aborting build", "build_id", bd.id, "targets", len(targets))
	go b.killTargets(bd, targets)
	b.persist()
	return BuilderAborting, nil
}

// killTargets kills the processes of targets, bounded by the abort timeout.
func (b *Builder) killTargets(bd *build, targets []target.Target) {
	ctx, cancel := context.WithTimeout(context.Background(), b.abortTimeout)
	defer cancel()
	for _, t := range targets {
		func() {
			defer func() {
				if p := recover(); p != nil {
					b.logger.Error("target panicked while killing processes", "build_id", bd.id, "panic", fmt.Sprint(p))
				}
			}()
			if err := t.KillProcesses(ctx); err != nil {
				b.logger.Warn("cannot kill build processes", "build_id", bd.id, "error", err)
			}
		}()
	}
}

// abortExpired is the watchdog: the build did not stop in time.
func (b *Builder) abortExpired(bd *build) {
	defer b.persist()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur != bd || b.state != BuilderAborting {
		return
	}
	fmt.Fprintln(b.log, "ABORTING: Failed to kill all processes.")
	if err := b.log.Flush(); err != nil {
		b.logger.Error("cannot flush the build log", "error", err)
	}
	bd.detached.Store(true)
	bd.result = builders.BuildBuilderFail
	b.state = BuilderWaiting
	b.metrics.abortTimedOut()
	b.metrics.buildFinished(bd.tag, string(bd.result), time.Since(bd.started))
	b.logger.Error("build did not stop within the abort timeout; abandoned", "build_id", bd.id, "timeout", b.abortTimeout)
}

func (b *Builder) rpcClean(_ *http.Request, params []any) (any, error) {
	if err := arity("clean", params); err != nil {
		return nil, err
	}
	return b.Clean()
}

// Clean removes a WAITING build's results and log and returns to IDLE.
// Inputs stay in the cache: only results the build itself put there are
// removed (a result whose content equals an input, or any file cached
// before, is the cache's, not the build's), and not those an
// ensurepresent asked for since.
func (b *Builder) Clean() (string, error) {
	// The journal says IDLE before anything is removed: a crash in the
	// middle leaves at worst results the cache prunes by age, never a
	// WAITING build whose files are gone. Lock order: journal, then b.mu.
	if b.journal != nil {
		b.journal.mu.Lock()
		defer b.journal.mu.Unlock()
	}
	b.mu.Lock()
	if b.state != BuilderWaiting {
		state := b.state
		b.mu.Unlock()
		return "", Faultf("clean: the builder is %s; only a WAITING builder can be cleaned", shortState(state))
	}
	bd := b.cur
	if b.journal != nil {
		if err := b.journal.write(&journalRecord{Version: journalVersion, State: BuilderIdle}); err != nil {
			b.logger.Error("cannot write the builder journal; a crash now would lose the builder's state", "error", err)
		}
	}
	sums := make([]string, 0, len(bd.files))
	for _, m := range bd.files {
		sums = append(sums, m.Value.(string))
	}
	b.removeOwned(bd.id, sums, bd.owned)
	if err := b.log.Remove(); err != nil {
		b.logger.Error("cannot remove the build log", "error", err)
	}
	bd.detached.Store(true)
	b.cur = nil
	b.state = BuilderIdle
	b.mu.Unlock()
	b.logger.Info("cleaned", "build_id", bd.id)
	return BuilderIdle, nil
}

// removeOwned removes, in the order of sums, the cached results a build
// created (owned), except those touched (by an ensurepresent cache hit)
// since they were stored.
func (b *Builder) removeOwned(id string, sums []string, owned map[string]int64) {
	seen := map[string]bool{}
	for _, sum := range sums {
		mtime, mine := owned[sum]
		if !mine || seen[sum] {
			continue
		}
		seen[sum] = true
		if now, ok := b.cache.ModTime(sum); !ok || now != mtime {
			if ok {
				b.logger.Info("keeping a build result asked for since as an input", "build_id", id, "sha1", sum)
			}
			continue
		}
		if err := b.cache.Remove(sum); err != nil {
			b.logger.Error("cannot remove a build result", "build_id", id, "sha1", sum, "error", err)
		}
	}
}

// shutdown stops a running build for Close: cancel, kill, and wait for Run
// at most timeout. The build is detached first, so that what its manager
// makes of the cancellation is not recorded: the journal keeps saying it
// was running, and the restarted agent reports IDLE (requeue) and sweeps
// it, rather than a PACKAGEFAIL or ABORTED the build did not earn.
func (b *Builder) shutdown(timeout time.Duration) {
	b.mu.Lock()
	b.draining = true
	bd := b.cur
	running := bd != nil && b.active(bd)
	var targets []target.Target
	if running {
		bd.detached.Store(true)
		bd.cancel()
		targets = slices.Clone(bd.targets)
	}
	b.mu.Unlock()
	if !running {
		if bd != nil && !bd.detached.Load() {
			// A build that has just finished: let its WAITING record
			// reach the journal (run closes done after writing it).
			select {
			case <-bd.done:
			case <-time.After(timeout):
			}
		}
		return
	}
	b.logger.Info("stopping the running build", "build_id", bd.id)
	go b.killTargets(bd, targets)
	select {
	case <-bd.done:
	case <-time.After(timeout):
		b.logger.Warn("build did not stop at shutdown", "build_id", bd.id)
	}
}
