package agent

import (
	_ "embed"
	"time"
)

// DefaultConfigTOML is the configuration `buildd-agent run` uses without
// --config. It works on a fresh machine: loopback only, state under
// /var/lib/buildd-agent.
//
//go:embed default.toml
var DefaultConfigTOML []byte

// Config is the agent's configuration file (TOML). Every key is documented
// in etc/buildd-agent.toml; unknown keys and wrong types are errors.
type Config struct {
	Builder BuilderConfig `toml:"builder"`
	Proxy   ProxyConfig   `toml:"proxy"`
	LXD     LXDConfig     `toml:"lxd"`
	Chroot  ChrootConfig  `toml:"chroot"`
	Sbuild  SbuildConfig  `toml:"sbuild"`
	Limits  LimitsConfig  `toml:"limits"`
	Log     LogConfig     `toml:"log"`

	// TranslationTemplates is launchpad-buildd's [translationtemplatesmanager].
	TranslationTemplates TranslationTemplatesConfig `toml:"translationtemplatesmanager"`
}

// BuilderConfig is the [builder] section.
type BuilderConfig struct {
	// Architectures are the architecture tags this builder builds for; the
	// first is the one info() reports (launchpad-buildd's architecturetag).
	Architectures []string `toml:"architectures"`
	// BindAddress and Port are where the XML-RPC and file cache server
	// listens (honoured, unlike launchpad-buildd's bindhost).
	BindAddress string `toml:"bind_address"`
	Port        int    `toml:"port"`
	// StateDir holds the file cache, build homes and caches unless those
	// are set on their own.
	StateDir string `toml:"state_dir"`
	// FileCacheDir defaults to <state_dir>/filecache.
	FileCacheDir string `toml:"file_cache_dir"`
	// BuildHome defaults to <state_dir>/builds; each build gets build-<id> in it.
	BuildHome string `toml:"build_home"`
	// FileCacheMaxAge: cached files unused for this long are removed, once
	// at start and then daily (launchpad-buildd's cron: two days); "0s"
	// keeps them forever.
	FileCacheMaxAge Duration `toml:"file_cache_max_age"`
	// GitMirrorMaxBytes bounds the git mirror cache under
	// <state_dir>/git-mirrors: the least recently used mirrors are removed
	// past it, at start and then daily; 0 keeps them all.
	GitMirrorMaxBytes int64 `toml:"git_mirror_max_bytes"`
	// Backend is the default target for container managers: "lxd" or "chroot".
	Backend string `toml:"backend"`
	// AbortTimeout is how long abort waits for a build to stop before it
	// declares BUILDERFAIL (launchpad-buildd: 120 s).
	AbortTimeout Duration `toml:"abort_timeout"`
	// MetricsAddress, if set, serves Prometheus metrics at /metrics there.
	MetricsAddress string `toml:"metrics_address"`
	// ShutdownGrace is how long SIGTERM waits for a running build to end
	// by itself before stopping it (so that an upgrade does not throw a
	// long build away); 0 stops it at once. Reloaded on SIGHUP.
	ShutdownGrace Duration `toml:"shutdown_grace"`
}

// ProxyConfig is the [proxy] section.
type ProxyConfig struct {
	// BindAddress of the builder proxy; "" means the target's host address
	// (the LXD bridge address). Never all interfaces.
	BindAddress string `toml:"bind_address"`
	Port        int    `toml:"port"`
	// SnapStore is a snap store proxy URL (launchpad-buildd [proxy] snapstore).
	SnapStore string `toml:"snapstore"`
	// Apt is an apt proxy URL (launchpad-buildd [proxy] apt).
	Apt string `toml:"apt"`
	// ClamAVDatabase is the ClamAV database mirror CI builds with
	// scan_malware point freshclam at (PrivateMirror; launchpad-buildd
	// [proxy] clamavdatabase); "" keeps the target's freshclam.conf.
	ClamAVDatabase string `toml:"clamavdatabase"`
}

// LXDConfig is the [lxd] section.
type LXDConfig struct {
	// Socket is LXD's unix socket ("" = LXD's default); RemoteURL, if set,
	// is used instead (https://host:8443).
	Socket    string `toml:"socket"`
	RemoteURL string `toml:"remote_url"`
	// TLSClientCert and TLSClientKey are the PEM files of the client
	// certificate the remote LXD trusts (lxc config trust add), and
	// TLSServerCert the remote's own certificate (its server.crt), pinned;
	// "" trusts the system's CAs instead. Only with RemoteURL.
	TLSClientCert string `toml:"tls_client_cert"`
	TLSClientKey  string `toml:"tls_client_key"`
	TLSServerCert string `toml:"tls_server_cert"`
	// Bridge and Subnet: the agent's bridge and its host address/prefix.
	Bridge string `toml:"bridge"`
	Subnet string `toml:"subnet"`
	// NAT routes the bridge outward; off by default and in tests.
	NAT bool `toml:"nat"`
	// StoragePool the containers' root disks live in.
	StoragePool string `toml:"storage_pool"`
	// Profile is the LXD profile the agent owns.
	Profile string `toml:"profile"`
	// Privileged containers (loop devices); unprivileged by default.
	Privileged bool `toml:"privileged"`
	// ReadyTimeout bounds the wait for a started container to be ready.
	ReadyTimeout Duration `toml:"ready_timeout"`
	// ImageMaxAge and ImageMaxCount prune cached chroot images.
	ImageMaxAge   Duration `toml:"image_max_age"`
	ImageMaxCount int      `toml:"image_max_count"`
	// Instance labels every LXD object this agent makes, so that crash
	// cleanup and image pruning touch only its own ("" = "default").
	// Agents (or test suites) sharing one LXD daemon use different ones.
	Instance string `toml:"instance"`
}

// ChrootConfig is the [chroot] section (the user-namespace chroot target).
type ChrootConfig struct {
	// IDMapUser is the /etc/subuid and /etc/subgid entry whose range maps
	// the chroot's ids ("root" by default).
	IDMapUser string `toml:"idmap_user"`
}

// SbuildConfig is the [sbuild] section (binary package builds).
type SbuildConfig struct {
	// User is the unprivileged user sbuild runs as; the build root is
	// mapped to its first /etc/subuid and /etc/subgid ranges (65536 ids
	// each at least). launchpad-buildd's builders use "buildd".
	User string `toml:"user"`
}

// TranslationTemplatesConfig is the [translationtemplatesmanager] section.
type TranslationTemplatesConfig struct {
	// ResultArchive is the name of a translation-templates build's result
	// tarball, the file buildd-manager fetches ("translation-templates.tar.gz").
	ResultArchive string `toml:"resultarchive"`
}

// LimitsConfig is the [limits] section.
type LimitsConfig struct {
	// RequestBodyBytes caps an XML-RPC request body (HTTP 413 above it).
	RequestBodyBytes int64 `toml:"request_body_bytes"`
	// LogBytes caps the build log; past it a truncation marker is written
	// once and further output is dropped.
	LogBytes int64 `toml:"log_bytes"`
	// ResultFileBytes caps one result file (its apparent size: a sparse
	// file counts in full); a bigger result fails the build as
	// PACKAGEFAIL and is not stored. Reloaded on SIGHUP.
	ResultFileBytes int64 `toml:"result_file_bytes"`
	// ResultTotalBytes caps the results of one build together.
	ResultTotalBytes int64 `toml:"result_total_bytes"`
	// DownloadBytes caps one ensurepresent download; nothing is stored
	// past it.
	DownloadBytes int64 `toml:"download_bytes"`
	// MinFreeBytes is the free disk space the file cache's and the build
	// home's file systems must have for build() to accept a build.
	MinFreeBytes int64 `toml:"min_free_bytes"`
}

// LogConfig is the [log] section (the agent's own log, not the build log).
type LogConfig struct {
	// Level: debug, info, warn, error.
	Level string `toml:"level"`
	// Format: text or json.
	Format string `toml:"format"`
}

// Duration is a time.Duration written as a Go duration string ("120s").
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler for TOML.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
