// Package builders holds the build managers (snap, ci, oci, ...), each
// registered under the manager tag the build master names in build(). A
// manager validates its arguments before the builder leaves IDLE, then runs
// its phases against a target.Target with a context that abort cancels.
//
// Managers never import the agent: what they need from it (the build log,
// the file cache, targets, the builder proxy settings) reaches them through
// Env.
package builders

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// BuildStatus is the result of a build as the build master sees it. The
// strings are the wire values of launchpad-buildd.
type BuildStatus string

const (
	BuildOK          BuildStatus = "BuildStatus.OK"
	BuildDepFail     BuildStatus = "BuildStatus.DEPFAIL"
	BuildGivenBack   BuildStatus = "BuildStatus.GIVENBACK"
	BuildPackageFail BuildStatus = "BuildStatus.PACKAGEFAIL"
	BuildChrootFail  BuildStatus = "BuildStatus.CHROOTFAIL"
	BuildBuilderFail BuildStatus = "BuildStatus.BUILDERFAIL"
	BuildAborted     BuildStatus = "BuildStatus.ABORTED"
)

// HasFilemap says whether status() reports filemap and dependencies for s
// (launchpad-buildd: only OK, PACKAGEFAIL and DEPFAIL).
func (s BuildStatus) HasFilemap() bool {
	return s == BuildOK || s == BuildPackageFail || s == BuildDepFail
}

// Result is what a manager's Run reports.
type Result struct {
	Status BuildStatus
	// Dependencies is set with BuildDepFail.
	Dependencies string
}

// Request is a build() call as the agent received it, after the chroot and
// every filemap entry were found in the file cache.
type Request struct {
	BuildID string
	// Chroot is the chroot (or LXD image) file in the cache.
	Chroot target.Image
	// Files maps the filemap's names to their paths in the file cache.
	Files map[string]string
	// Args is the build's argument struct as decoded from XML-RPC: string,
	// bool, int64, float64, []byte, []any, map[string]any or nil values.
	Args map[string]any
}

// ArgError is returned by Factory when an argument is missing or has the
// wrong type or value. The agent reports it as Fault 8002 and stays IDLE.
type ArgError struct {
	Arg    string
	Reason string
}

func (e *ArgError) Error() string {
	return fmt.Sprintf("invalid build argument %q: %s", e.Arg, e.Reason)
}

// Env is what the agent gives a manager for one build.
type Env struct {
	// Log is the build log (sanitised as it is written). Managers write
	// their messages as whole lines.
	Log io.Writer
	// AddSecret masks every later occurrence of s in the build log.
	AddSecret func(s string)
	// NewTarget makes a target with the named backend ("lxd", "chroot").
	// The agent keeps track of it so that abort can kill its processes.
	NewTarget func(ctx context.Context, backend string, spec target.Spec) (target.Target, error)
	// AddWaitingFile stores a result in the file cache under its SHA-1 and
	// adds it to the filemap reported by status() as name → sha1.
	AddWaitingFile func(name string, r io.Reader) (sha1 string, err error)
	// SetStatus merges extras into what status() reports at top level
	// (e.g. revision_id); they stay visible until clean().
	SetStatus func(key string, value any)
	// Config carries the agent settings managers use.
	Config ManagerConfig
}

// ManagerConfig is the part of the agent configuration managers read.
type ManagerConfig struct {
	// Arch is the builder's default architecture tag.
	Arch string
	// Backend is the default backend for container managers ("lxd").
	Backend string
	// ProxyBind is the address the builder proxy listens on ("" = the
	// target's ProxyHost); ProxyPort its port (8222).
	ProxyBind string
	ProxyPort int
	// StateDir is where managers may keep caches (e.g. the git mirror cache).
	StateDir string
	// SnapStoreProxyURL is [proxy] snapstore from the config, if any.
	SnapStoreProxyURL string
	// AptProxyURL is [proxy] apt from the config, if any: written to the
	// target's apt configuration when a build replaces its archives.
	AptProxyURL string
	// BuildHome is [builder] build_home: build-<id> directories go in it
	// (swept at agent start, see RegisterSweeper).
	BuildHome string
	// ResultFileBytes is [limits] result_file_bytes when the build started
	// (0: no limit): GatherResults refuses a bigger result by its size
	// before copying a byte. AddWaitingFile enforces it in any case.
	ResultFileBytes int64
	// SbuildUser is the unprivileged user binary package builds run sbuild
	// as ([sbuild] user); its subordinate ids map the build root.
	SbuildUser string
	// ImageMaxAge and ImageMaxCount prune cached build roots (LXD images,
	// repacked sbuild chroots); zero keeps them.
	ImageMaxAge   time.Duration
	ImageMaxCount int
	// TranslationTemplatesResult is [translationtemplatesmanager]
	// resultarchive ("" = translation-templates.tar.gz).
	TranslationTemplatesResult string
	// ClamAVDatabaseURL is [proxy] clamavdatabase: the ClamAV database
	// mirror CI builds with scan_malware point freshclam at ("" = none).
	ClamAVDatabaseURL string
}

// Manager runs one build. It is made by a Factory, which has validated the
// arguments already.
type Manager interface {
	// Run runs the build's phases. ctx is cancelled on abort; Run must then
	// return promptly (it is killed from outside through the target as well).
	Run(ctx context.Context, env *Env) Result
	// ProxyInfo reports the proxy_info() fields.
	ProxyInfo() (useFetchService bool, revocationEndpoint string)
}

// Factory validates a build request and makes its manager. It must not have
// side effects: an error leaves the builder IDLE and untouched.
type Factory func(req Request) (Manager, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]Factory{}
)

// Register makes a manager available under tag. It panics on a duplicate,
// like http.Handle, because that is a programming error.
func Register(tag string, f Factory) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[tag]; dup {
		panic("builders: duplicate manager tag " + tag)
	}
	registry[tag] = f
}

// Unregister removes a tag; tests use it to clean up their own managers.
func Unregister(tag string) {
	registryMu.Lock()
	defer registryMu.Unlock()
	delete(registry, tag)
}

var checks = map[string]func(ManagerConfig) error{}

// RegisterCheck adds a host check for tag's manager: what the host must
// have for such builds (a tool installed, a user configured). The agent
// runs it at start, to log what is missing, and before each build() of
// that tag, which it refuses with the check's error.
func RegisterCheck(tag string, check func(ManagerConfig) error) {
	registryMu.Lock()
	defer registryMu.Unlock()
	checks[tag] = check
}

// Check runs tag's host check (nil when it has none).
func Check(tag string, cfg ManagerConfig) error {
	registryMu.RLock()
	check := checks[tag]
	registryMu.RUnlock()
	if check == nil {
		return nil
	}
	return check(cfg)
}

// Lookup returns the factory for tag.
func Lookup(tag string) (Factory, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	f, ok := registry[tag]
	return f, ok
}

// tagOrder is launchpad-buildd's info() order; tags it does not know sort
// after these, by name.
var tagOrder = []string{"binarypackage", "sourcepackagerecipe", "translation-templates",
	"livefs", "snap", "oci", "charm", "ci", "rock", "craft"}

// Tags lists the registered manager tags in launchpad-buildd's order.
func Tags() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	rank := map[string]int{}
	for i, t := range tagOrder {
		rank[t] = i
	}
	tags := make([]string, 0, len(registry))
	for t := range registry {
		tags = append(tags, t)
	}
	sort.Slice(tags, func(i, j int) bool {
		ri, iok := rank[tags[i]]
		rj, jok := rank[tags[j]]
		switch {
		case iok && jok:
			return ri < rj
		case iok != jok:
			return iok
		}
		return tags[i] < tags[j]
	})
	return tags
}
