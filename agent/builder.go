package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/buildd-agent/buildd-agent/builders"
	"github.com/buildd-agent/buildd-agent/builders/target"
)

// Builder states, as status() reports them (launchpad-buildd's wire strings).
const (
	BuilderIdle     = "BuilderStatus.IDLE"
	BuilderBuilding = "BuilderStatus.BUILDING"
	BuilderWaiting  = "BuilderStatus.WAITING"
	BuilderAborting = "BuilderStatus.ABORTING"

	// build() answers these instead of starting a build.
	BuilderUnknownBuilder = "BuilderStatus.UNKNOWNBUILDER"
	BuilderUnknownSum     = "BuilderStatus.UNKNOWNSUM"
)

// ProtocolVersion is what info() reports first: "1.0" implies /filecache/,
// /filecache/buildlog and the reduced XML-RPC interface.
const ProtocolVersion = "1.0"

// minSecretLen is the shortest build argument value masked in the build
// log: masking one- to three-character strings everywhere would make the
// log unreadable and protects nothing.
const minSecretLen = 4

// resultCache is the part of *FileCache the builder uses (a seam for the
// state machine's unit tests).
type resultCache interface {
	EnsurePresent(ctx context.Context, sha1, url, user, password string) (bool, string)
	Has(sha1 string) bool
	Path(sha1 string) string
	StoreResult(r io.Reader, limit int64) (StoredFile, error)
	ModTime(sha1 string) (int64, bool)
	Remove(sha1 string) error
}

// buildLogger is the part of *BuildLog the builder uses.
type buildLogger interface {
	io.Writer
	AddSecret(s string)
	Tail() []byte
	Flush() error
	Reset() error
	Remove() error
}

type builderDeps struct {
	metrics *metrics // nil in unit tests
	cfg     *Config
	logger  *slog.Logger
	cache   resultCache
	log     buildLogger
	targets map[string]target.Factory
	// journal records every state change (nil: none, in unit tests).
	journal *journal
	// freeSpace reports the free bytes of the file system holding a
	// path (a seam for tests; statfs by default).
	freeSpace func(path string) (uint64, error)
	// prepare is Options.Prepare (nil: none).
	prepare func(sha1, path string)
}

// Builder is the state machine IDLE → BUILDING → (ABORTING) → WAITING →
// IDLE behind the XML-RPC methods. Its mutex guards only state changes and
// snapshots: it is never held while downloading, storing files, running a
// manager or killing processes, so status() always answers at once.
type Builder struct {
	builderDeps
	arch         string
	abortTimeout time.Duration
	// idleStatus is status()'s whole response in IDLE, which never changes.
	idleStatus preEncoded

	// limits are the reloadable [limits] and [builder] values (SIGHUP).
	limits atomic.Pointer[Limits]

	mu       sync.Mutex
	state    string
	starting bool   // a build() is between its IDLE check and BUILDING
	draining bool   // shutting down: build() is refused
	gen      uint64 // numbers builds, for the logs
	cur      *build // nil when IDLE
}

// Limits are the values a SIGHUP can change while the agent runs.
type Limits struct {
	ResultFileBytes  int64
	ResultTotalBytes int64
	MinFreeBytes     int64
	DownloadBytes    int64
	ShutdownGrace    time.Duration
}

// LimitsFromConfig picks the reloadable values out of a configuration.
func LimitsFromConfig(cfg *Config) Limits {
	return Limits{
		ResultFileBytes:  cfg.Limits.ResultFileBytes,
		ResultTotalBytes: cfg.Limits.ResultTotalBytes,
		MinFreeBytes:     cfg.Limits.MinFreeBytes,
		DownloadBytes:    cfg.Limits.DownloadBytes,
		ShutdownGrace:    cfg.Builder.ShutdownGrace.Duration,
	}
}

// build is one build from build() to clean().
type build struct {
	gen     uint64
	id      string
	tag     string
	started time.Time
	manager builders.Manager
	cancel  context.CancelFunc
	done    chan struct{} // closed when the manager's Run returns
	// detached is set when the build no longer owns the builder (the abort
	// watchdog gave up on it, or clean() ran): whatever its goroutine
	// still does is dropped.
	detached atomic.Bool

	// proxyUse and proxyEndpoint are the manager's ProxyInfo, asked once
	// at start (and journalled: a restored WAITING build has no manager).
	proxyUse      bool
	proxyEndpoint string

	// Guarded by Builder.mu. files and extras are replaced, never
	// modified, so status() can use a snapshot without copying.
	result     builders.BuildStatus
	deps       string
	files      Struct // filemap: name → sha1, in the order results were added
	extras     Struct // manager status extras
	targets    []target.Target
	abortTimer *time.Timer
	// owned are the results this build put in the cache (they were not
	// there before), with their modification time once stored: clean()
	// removes only those, and only if no ensurepresent touched them since.
	owned map[string]int64
	// resultBytes is the total size of the results stored so far.
	resultBytes int64
	// overLimit: a result went over a [limits] size; the build is a
	// PACKAGEFAIL whatever its manager says.
	overLimit bool
}

func newBuilder(d builderDeps) *Builder {
	b := &Builder{
		builderDeps:  d,
		arch:         d.cfg.Builder.Architectures[0],
		abortTimeout: d.cfg.Builder.AbortTimeout.Duration,
		state:        BuilderIdle,
	}
	if b.abortTimeout <= 0 {
		b.abortTimeout = DefaultAbortTimeout
	}
	if b.freeSpace == nil {
		b.freeSpace = statfsFree
	}
	lim := LimitsFromConfig(d.cfg)
	b.limits.Store(&lim)
	idle, err := AppendResponse(nil, Struct{{"builder_status", BuilderIdle}, {"builder_version", Version}})
	if err != nil {
		panic(err) // constant strings always serialise
	}
	b.idleStatus = idle
	return b
}

// State is the builder's current state (BuilderIdle, …).
func (b *Builder) State() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

func (b *Builder) methods() map[string]method {
	return map[string]method{
		"echo":          b.rpcEcho,
		"info":          b.rpcInfo,
		"status":        b.rpcStatus,
		"proxy_info":    b.rpcProxyInfo,
		"ensurepresent": b.rpcEnsurePresent,
		"build":         b.rpcBuild,
		"abort":         b.rpcAbort,
		"clean":         b.rpcClean,
	}
}

// Parameter checking. Messages name the method, the parameter's position
// and name, and what was sent, so that a misbehaving client can be fixed
// from the fault alone.

func (b *Builder) rpcEcho(_ *http.Request, params []any) (any, error) {
	return params, nil
}

func (b *Builder) rpcInfo(_ *http.Request, params []any) (any, error) {
	if err := arity("info", params); err != nil {
		return nil, err
	}
	return []any{ProtocolVersion, b.arch, builders.Tags()}, nil
}

func (b *Builder) rpcStatus(_ *http.Request, params []any) (any, error) {
	if err := arity("status", params); err != nil {
		return nil, err
	}
	return b.status(), nil
}

// status is status()'s value: a preEncoded document in IDLE, a Struct
// otherwise, keyed as launchpad-buildd's (builder_status first, manager
// extras last).
func (b *Builder) status() any {
	b.mu.Lock()
	state, bd := b.state, b.cur
	if state == BuilderIdle {
		b.mu.Unlock()
		return b.idleStatus
	}
	result, deps, files, extras := bd.result, bd.deps, bd.files, bd.extras
	b.mu.Unlock()

	s := make(Struct, 0, 6+len(extras))
	s = append(s, Member{"builder_status", state}, Member{"builder_version", Version})
	switch state {
	case BuilderBuilding:
		// The tail is read outside the lock: the log has its own.
		s = append(s, Member{"build_id", bd.id}, Member{"logtail", statusLogTail(b.log.Tail())})
	case BuilderAborting:
		s = append(s, Member{"build_id", bd.id})
	case BuilderWaiting:
		s = append(s, Member{"build_status", string(result)}, Member{"build_id", bd.id})
		if result.HasFilemap() {
			fm := files
			if fm == nil {
				fm = Struct{}
			}
			s = append(s, Member{"filemap", fm}, Member{"dependencies", deps})
		}
	}
	return append(s, extras...)
}

// statusLogTail is launchpad-buildd's tail for managers whose logs are
// sanitised (snap, oci, charm, ci, rock, craft; all of ours are): the
// first, probably partial, line is dropped and the lines are re-joined with
// "\n" and no trailing newline. Lines end at \n, \r or \r\n, as with
// Python's bytes.splitlines.
func statusLogTail(tail []byte) []byte {
	if bytes.IndexByte(tail, '\r') < 0 {
		// Only \n line ends (the usual case): the lines after the first,
		// less one final newline, are a sub-slice; no copy.
		i := bytes.IndexByte(tail, '\n')
		if i < 0 {
			return nil
		}
		rest := tail[i+1:]
		if n := len(rest); n > 0 && rest[n-1] == '\n' {
			rest = rest[:n-1]
		}
		return rest
	}
	out := make([]byte, 0, len(tail))
	first := true
	for len(tail) > 0 {
		i := 0
		for i < len(tail) && tail[i] != '\n' && tail[i] != '\r' {
			i++
		}
		line := tail[:i]
		if i < len(tail) {
			if tail[i] == '\r' && i+1 < len(tail) && tail[i+1] == '\n' {
				i++
			}
			i++
		}
		tail = tail[i:]
		if first {
			first = false
			continue
		}
		out = append(out, line...)
		out = append(out, '\n')
	}
	if len(out) > 0 {
		out = out[:len(out)-1]
	}
	return out
}

func (b *Builder) rpcProxyInfo(_ *http.Request, params []any) (any, error) {
	if err := arity("proxy_info", params); err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.state == BuilderIdle {
		b.mu.Unlock()
		return nil, Faultf("proxy_info: the builder is IDLE: there is no build to report on")
	}
	use, endpoint := b.cur.proxyUse, b.cur.proxyEndpoint
	b.mu.Unlock()
	return Struct{{"use_fetch_service", use}, {"revocation_endpoint", endpoint}}, nil
}

func (b *Builder) rpcEnsurePresent(r *http.Request, params []any) (any, error) {
	if err := arity("ensurepresent", params, "sha1sum", "url", "username", "password"); err != nil {
		return nil, err
	}
	sum, ok := params[0].(string)
	if !ok {
		return nil, paramError("ensurepresent", 0, "sha1sum", "a string", params[0])
	}
	var strs [3]string
	for i, name := range []string{"url", "username", "password"} {
		s, err := stringOrNil("ensurepresent", params, i+1, name)
		if err != nil {
			return nil, err
		}
		strs[i] = s
	}
	// No builder lock here: a download must never hold up status().
	present, info := b.cache.EnsurePresent(r.Context(), sum, strs[0], strs[1], strs[2])
	if present && b.prepare != nil {
		b.prepare(sum, b.cache.Path(sum))
	}
	return []any{present, info}, nil
}

func (b *Builder) rpcBuild(r *http.Request, params []any) (any, error) {
	const m = "build"
	if err := arity(m, params, "buildid", "managertag", "chrootsum", "filemap", "args"); err != nil {
		return nil, err
	}
	tag, ok := params[1].(string)
	if !ok {
		return nil, paramError(m, 1, "managertag", "a string", params[1])
	}
	chrootSum, ok := params[2].(string)
	if !ok {
		return nil, paramError(m, 2, "chrootsum", "a string", params[2])
	}
	rawFiles, ok := params[3].(map[string]any)
	if !ok {
		return nil, paramError(m, 3, "filemap", "a struct", params[3])
	}
	names := make([]string, 0, len(rawFiles))
	for name := range rawFiles {
		names = append(names, name)
	}
	// Struct member order is lost in decoding; sorted order makes the
	// "first missing file" deterministic.
	sort.Strings(names)
	fileSums := make([]string, len(names))
	for i, name := range names {
		if err := checkFileName(name); err != nil {
			return nil, Faultf("%s: parameter 4 (filemap): %v", m, err)
		}
		sum, ok := rawFiles[name].(string)
		if !ok {
			return nil, Faultf("%s: parameter 4 (filemap): entry %q must be a string (a SHA-1), got %s", m, name, xmlrpcType(rawFiles[name]))
		}
		fileSums[i] = sum
	}
	args, ok := params[4].(map[string]any)
	if !ok {
		return nil, paramError(m, 4, "args", "a struct", params[4])
	}

	// launchpad-buildd's order: manager tag, chroot, files, then the build id.
	factory, ok := builders.Lookup(tag)
	if !ok {
		return []any{BuilderUnknownBuilder, fmt.Sprintf("%s not in %s", tag, pyReprList(builders.Tags()))}, nil
	}
	if !b.cache.Has(chrootSum) {
		return []any{BuilderUnknownSum, unknownSumInfo("CHROOTSUM", chrootSum, 12)}, nil
	}
	for _, sum := range fileSums {
		if !b.cache.Has(sum) {
			return []any{BuilderUnknownSum, unknownSumInfo("FILESUM", sum, 16)}, nil
		}
	}
	buildID, err := checkBuildID(params[0])
	if err != nil {
		return nil, err
	}
	if err := b.checkFreeSpace(); err != nil {
		return nil, err
	}

	req := builders.Request{
		BuildID: buildID,
		Chroot:  target.Image{Path: b.cache.Path(chrootSum), SHA1: chrootSum, Type: "chroot"},
		Files:   make(map[string]string, len(names)),
		Args:    args,
	}
	if t, ok := args["image_type"].(string); ok && t != "" {
		req.Chroot.Type = t
	}
	for i, name := range names {
		req.Files[name] = b.cache.Path(fileSums[i])
	}
	// After the reference's own checks: a host that lacks what this
	// manager needs refuses the build and stays IDLE.
	if err := builders.Check(tag, b.managerConfig()); err != nil {
		return nil, Faultf("build: %s builds are not possible on this builder: %v", tag, err)
	}
	if err := b.start(tag, factory, req); err != nil {
		return nil, err
	}
	// Journalled before build() answers: once the master sees BUILDING,
	// a crash leaves a record saying what to sweep.
	b.persist()
	return []any{BuilderBuilding, buildID}, nil
}

// start moves an IDLE builder to BUILDING and starts the manager. A
// builder that is not IDLE, or a request the manager's factory refuses,
// changes nothing at all.
func (b *Builder) start(tag string, factory builders.Factory, req builders.Request) error {
	b.mu.Lock()
	if b.draining {
		b.mu.Unlock()
		return Faultf("build: the builder is shutting down")
	}
	if b.state != BuilderIdle || b.starting {
		state := b.state
		b.mu.Unlock()
		if state == BuilderIdle {
			return Faultf("build: another build is being started")
		}
		return Faultf("build: the builder is %s, not IDLE (a finished build must be cleaned first)", shortState(state))
	}
	// The factory runs outside the lock (it only validates, but it is not
	// ours); "starting" keeps a second build() out meanwhile.
	b.starting = true
	b.mu.Unlock()

	mgr, err := callFactory(factory, req)

	b.mu.Lock()
	defer b.mu.Unlock()
	b.starting = false
	if err != nil {
		var argErr *builders.ArgError
		if !errors.As(err, &argErr) {
			b.logger.Warn("build manager refused the build", "manager", tag, "build_id", req.BuildID, "error", err)
		}
		return Faultf("build: %v", err)
	}
	if err := b.log.Reset(); err != nil {
		b.logger.Error("cannot reset the build log", "error", err)
		return Faultf("build: cannot reset the build log: %v", err)
	}
	b.gen++
	ctx, cancel := context.WithCancel(context.Background())
	bd := &build{
		gen:     b.gen,
		id:      req.BuildID,
		tag:     tag,
		started: time.Now(),
		manager: mgr,
		cancel:  cancel,
		done:    make(chan struct{}),
		owned:   map[string]int64{},
	}
	bd.proxyUse, bd.proxyEndpoint = mgr.ProxyInfo()
	b.cur = bd
	b.state = BuilderBuilding
	for _, s := range collectSecrets(req.Args) {
		b.log.AddSecret(s)
	}
	w := &buildWriter{bd: bd, log: b.log}
	if u, ok := req.Args["build_url"].(string); ok && u != "" {
		fmt.Fprintf(w, "%s\n", u)
	}
	// launchpad-buildd's builder-prep lines: what built this.
	writeBuilderPrep(w)
	env := b.newEnv(bd, w)
	b.logger.Info("build started", "build_id", bd.id, "manager", tag, "build", bd.gen)
	go b.run(ctx, bd, env)
	return nil
}

func callFactory(factory builders.Factory, req builders.Request) (mgr builders.Manager, err error) {
	defer func() {
		if p := recover(); p != nil {
			mgr, err = nil, fmt.Errorf("internal error in the build manager's argument check: %v", p)
		}
	}()
	mgr, err = factory(req)
	if err == nil && mgr == nil {
		err = errors.New("internal error: the build manager's factory returned no manager")
	}
	return mgr, err
}

func shortState(s string) string { return strings.TrimPrefix(s, "BuilderStatus.") }

// run runs the manager; a panic is a BUILDERFAIL, never a stuck builder.
func (b *Builder) run(ctx context.Context, bd *build, env *builders.Env) {
	defer close(bd.done)
	res := builders.Result{Status: builders.BuildBuilderFail}
	func() {
		defer func() {
			if p := recover(); p != nil {
				b.logger.Error("build manager panicked", "build_id", bd.id, "manager", bd.tag,
					"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				fmt.Fprintf(env.Log, "Internal error in the %s build manager: %v\n", bd.tag, p)
				res = builders.Result{Status: builders.BuildBuilderFail}
			}
		}()
		res = bd.manager.Run(ctx, env)
	}()
	b.finish(bd, res)
	b.persist()
}

var knownResults = map[builders.BuildStatus]bool{
	builders.BuildOK: true, builders.BuildDepFail: true, builders.BuildGivenBack: true,
	builders.BuildPackageFail: true, builders.BuildChrootFail: true,
	builders.BuildBuilderFail: true, builders.BuildAborted: true,
}

// finish moves a build whose Run returned to WAITING; a build the abort
// watchdog gave up on is ignored.
func (b *Builder) finish(bd *build, res builders.Result) {
	b.mu.Lock()
	defer b.mu.Unlock()
	bd.cancel()
	if !b.active(bd) {
		b.logger.Warn("abandoned build finished late; ignored", "build_id", bd.id, "status", string(res.Status))
		return
	}
	if bd.abortTimer != nil {
		bd.abortTimer.Stop()
	}
	status := res.Status
	switch {
	case b.state == BuilderAborting:
		// launchpad-buildd: buildComplete while ABORTING is ABORTED
		// unless the build had failed the builder.
		if status != builders.BuildBuilderFail {
			status = builders.BuildAborted
		}
	case !knownResults[status]:
		b.logger.Error("build manager returned an unknown status", "build_id", bd.id, "status", string(status))
		status = builders.BuildBuilderFail
	}
	if bd.overLimit && status != builders.BuildAborted && status != builders.BuildPackageFail {
		// The build made a result it may not store: its own fault,
		// whatever the manager made of the error.
		b.logger.Info("build result was over a size limit: PACKAGEFAIL", "build_id", bd.id, "manager_status", string(status))
		status = builders.BuildPackageFail
	}
	if status == builders.BuildDepFail {
		bd.deps = res.Dependencies
	}
	bd.result = status
	if err := b.log.Flush(); err != nil {
		b.logger.Error("cannot flush the build log", "error", err)
	}
	b.state = BuilderWaiting
	b.metrics.buildFinished(bd.tag, string(status), time.Since(bd.started))
	b.logger.Info("build finished", "build_id", bd.id, "status", string(status))
}
