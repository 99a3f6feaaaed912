package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/buildd-agent/buildd-agent/builders"
)

// persist journals the builder's current state. It is called after each
// transition, outside b.mu (an fsync must not hold up status()); the
// journal's own lock is taken first and the snapshot under it, so that
// records reach the disk in the order of the states they describe and the
// last one written is always the latest.
func (b *Builder) persist() {
	if b.journal == nil {
		return
	}
	b.journal.mu.Lock()
	defer b.journal.mu.Unlock()
	b.mu.Lock()
	rec := b.snapshotLocked()
	b.mu.Unlock()
	if err := b.journal.write(rec); err != nil {
		b.logger.Error("cannot write the builder journal; a crash now would lose the builder's state", "error", err)
	}
}

// snapshotLocked is the journal record of the current state. b.mu held.
func (b *Builder) snapshotLocked() *journalRecord {
	rec := &journalRecord{Version: journalVersion, State: b.state}
	bd := b.cur
	if b.state == BuilderIdle || bd == nil {
		rec.State = BuilderIdle
		return rec
	}
	rec.BuildID, rec.Manager, rec.Started = bd.id, bd.tag, bd.started
	rec.UseFetchService, rec.RevocationEndpoint = bd.proxyUse, bd.proxyEndpoint
	rec.OverLimit = bd.overLimit
	if b.state == BuilderWaiting {
		rec.Result, rec.Dependencies = string(bd.result), bd.deps
		if lp, ok := b.log.(interface{ Path() string }); ok {
			rec.Log = lp.Path()
		}
	}
	for _, m := range bd.files {
		sum := m.Value.(string)
		f := journalFile{Name: m.Name, SHA1: sum}
		if mt, ok := bd.owned[sum]; ok {
			f.Owned, f.MTime = true, mt
		}
		rec.Files = append(rec.Files, f)
	}
	for _, m := range bd.extras {
		doc, err := AppendResponse(nil, m.Value)
		if err != nil {
			continue // setStatus refused unserialisable values already
		}
		rec.Extras = append(rec.Extras, journalExtra{Key: m.Name, Value: string(doc)})
	}
	return rec
}

// restoredManager stands for the manager of a build restored from the
// journal in WAITING: it has finished, only its proxy_info remains.
type restoredManager struct {
	use      bool
	endpoint string
}

func (m restoredManager) Run(context.Context, *builders.Env) builders.Result {
	return builders.Result{Status: builders.BuildBuilderFail}
}
func (m restoredManager) ProxyInfo() (bool, string) { return m.use, m.endpoint }

// restore puts a new builder (before it serves) in the state rec
// describes.
//
// A build that was WAITING stays WAITING with its filemap, status extras
// and log until clean(): the master collects it as if nothing happened.
//
// A build that was BUILDING or ABORTING cannot be resumed (its processes
// died with the agent). It is reported as IDLE, and what it stored is
// removed. Why IDLE rather than WAITING with BUILDERFAIL: buildd-manager
// (reference buildd-manager-args.md §7.4) resets and requeues a job whose
// builder answers IDLE while the job is dispatched to it, counting no
// failure against the builder or the job; BUILDERFAIL (or ABORTED while
// not cancelling) is "Build returned unexpected status", a scan failure
// that counts against both (§7.5) and, repeated, disables the builder. A
// crash of the agent is neither the job's fault nor a reason to disable a
// builder that restarted fine, so IDLE is the honest answer. The build
// home, work directories and the rest are swept by Sweep before the next
// build().
func (b *Builder) restore(rec *journalRecord) {
	if rec == nil || rec.State == BuilderIdle {
		return
	}
	if rec.State != BuilderWaiting {
		b.logger.Warn("a build was running when the agent stopped: reporting IDLE so that the build master requeues it (no failure counted), and sweeping what it left",
			"build_id", rec.BuildID, "manager", rec.Manager, "state", shortState(rec.State))
		owned := map[string]int64{}
		var sums []string
		for _, f := range rec.Files {
			sums = append(sums, f.SHA1)
			if f.Owned {
				owned[f.SHA1] = f.MTime
			}
		}
		b.removeOwned(rec.BuildID, sums, owned)
		return
	}
	b.gen++
	done := make(chan struct{})
	close(done)
	bd := &build{
		gen:           b.gen,
		id:            rec.BuildID,
		tag:           rec.Manager,
		started:       rec.Started,
		manager:       restoredManager{rec.UseFetchService, rec.RevocationEndpoint},
		cancel:        func() {},
		done:          done,
		proxyUse:      rec.UseFetchService,
		proxyEndpoint: rec.RevocationEndpoint,
		result:        builders.BuildStatus(rec.Result),
		deps:          rec.Dependencies,
		owned:         map[string]int64{},
		overLimit:     rec.OverLimit,
	}
	bd.detached.Store(true) // nothing runs that could write
	for _, f := range rec.Files {
		bd.files = append(bd.files, Member{f.Name, f.SHA1})
		if f.Owned {
			bd.owned[f.SHA1] = f.MTime
		}
	}
	for _, e := range rec.Extras {
		v, err := DecodeResponse(strings.NewReader(e.Value))
		if err != nil {
			continue // parseJournal checked them
		}
		bd.extras = append(bd.extras, Member{e.Key, v})
	}
	b.cur = bd
	b.state = BuilderWaiting
	b.logger.Info("restored a finished build from the journal: WAITING until clean()",
		"build_id", bd.id, "manager", bd.tag, "status", rec.Result, "files", len(bd.files))
}

// loadJournal reads the journal for New. A damaged record is set aside and
// ignored with a log line: the builder starts IDLE, never crashes on it.
func loadJournal(j *journal, logger interface {
	Error(string, ...any)
}) *journalRecord {
	rec, err := j.read()
	if err == nil {
		return rec
	}
	aside := "; it could not be set aside"
	if serr := j.setAside(); serr == nil {
		aside = "; kept as " + j.path + ".damaged"
	}
	logger.Error("ignoring a damaged builder journal: starting IDLE"+aside, "path", j.path, "error", err)
	return nil
}

// SetLimits applies reloaded limits (SIGHUP) to the builds that start
// after it and to results stored after it.
func (b *Builder) SetLimits(l Limits) {
	b.limits.Store(&l)
}

// checkFreeSpace refuses a build when the file cache's or the build
// home's file system is short of [limits] min_free_bytes.
func (b *Builder) checkFreeSpace() error {
	need := b.limits.Load().MinFreeBytes
	if need <= 0 {
		return nil
	}
	for _, dir := range []string{b.cfg.Builder.FileCacheDir, b.cfg.Builder.BuildHome} {
		if dir == "" {
			continue
		}
		free, err := b.freeSpace(dir)
		if err != nil {
			b.logger.Warn("cannot check free disk space", "path", dir, "error", err)
			continue
		}
		if free < uint64(need) {
			return Faultf("build: not enough free disk space: %s has %s free, this builder needs %s ([limits] min_free_bytes)",
				dir, humanBytes(free), humanBytes(uint64(need)))
		}
	}
	return nil
}

func statfsFree(path string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("cannot statfs %s: %w", path, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB (%d bytes)", float64(n)/float64(div), "KMGTPE"[exp], n)
}

// Drain refuses new builds and waits up to grace for a running build to
// end by itself (SIGTERM's graceful stop). It reports whether the builder
// is no longer running a build.
func (b *Builder) Drain(grace time.Duration) bool {
	b.mu.Lock()
	b.draining = true
	bd := b.cur
	running := bd != nil && b.active(bd)
	b.mu.Unlock()
	if !running {
		return true
	}
	if grace <= 0 {
		return false
	}
	b.logger.Info("waiting for the running build to finish before stopping", "build_id", bd.id, "grace", grace.String())
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-bd.done:
		// finish() and its journal write run before done is closed
		// (deferred in run): the WAITING record is on disk.
		return true
	case <-t.C:
		b.logger.Warn("the running build did not finish within the shutdown grace; stopping it", "build_id", bd.id, "grace", grace.String())
		return false
	}
}
