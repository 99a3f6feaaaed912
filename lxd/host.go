// Package lxd runs builds in LXD containers that look like the host: the
// target.Target of the "lxd" backend.
//
// Unlike launchpad-buildd's LXD backend (lpbuildd/target/lxd.py), containers
// are unprivileged by default, the agent's bridge never NATs or routes
// outward unless configured to, chroot tarballs are converted to LXD images
// in one streaming pass and cached by their SHA-1 (a second build on the same
// chroot skips the import), every object the agent creates is labelled with
// its instance name so that a restarted agent removes exactly its own
// leftovers, and KillProcesses really kills.
//
// All LXD calls go through the narrow server interface (server.go), over the
// canonical LXD Go client.
package lxd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canonical/lxd/shared/api"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// Labels carried by every LXD object the agent creates. LXD keeps user.*
// keys verbatim in instance and profile config and in image properties.
const (
	labelInstance = "user.buildd-agent.instance"
	labelBuildID  = "user.buildd-agent.build-id"
	labelSHA1     = "user.buildd-agent.sha1"
	labelSource   = "user.buildd-agent.source-type"
)

// Config configures the LXD target. Zero values take the defaults noted.
type Config struct {
	// Socket is LXD's unix socket ("" = LXD_SOCKET, then $LXD_DIR/unix.socket,
	// then the snap's or /var/lib/lxd's socket, as the LXD client resolves it).
	// RemoteURL, if set, is used instead (https://host:8443), with TLS.
	Socket, RemoteURL string
	TLS               RemoteTLS
	// Bridge is the LXD managed bridge the containers attach to ("lpbuilddbr0").
	Bridge string
	// Subnet is the host's address on the bridge with the prefix length
	// ("10.10.10.1/24").
	Subnet string
	// Address is the container's address; "" = the first host address after
	// the bridge's (10.10.10.2 by default).
	Address string
	// NAT enables NAT and routing outward on the bridge. Off by default: the
	// container reaches only the host.
	NAT bool
	// StoragePool ("default") and Profile ("buildd-agent") are ensured by NewHost.
	StoragePool, Profile string
	// Privileged makes every container privileged (Spec.Privileged does it per build).
	Privileged bool
	// ReadyTimeout bounds Start's wait for the container to boot (120s);
	// Options.ReadyTimeout overrides it per target.
	ReadyTimeout time.Duration
	// ImageMaxAge and ImageMaxCount prune the agent's cached images (only
	// those labelled with Instance). Zero means no limit.
	ImageMaxAge   time.Duration
	ImageMaxCount int
	// Instance is the value of the user.buildd-agent.instance label: crash
	// cleanup touches only objects carrying it ("default").
	Instance string
	// NamePrefix names containers and image aliases <prefix>-<series>-<arch> ("lp").
	NamePrefix string
	// BuildHome is the host directory holding per-build directories
	// (build-<id>); "" = none are made.
	BuildHome string
	// AgentPorts are the agent's own TCP ports (XML-RPC and file cache,
	// metrics): connections to them arriving on the bridge are reset by
	// INPUT rules the Host owns (firewall.go). None: no rules.
	AgentPorts []int
	// Logger is the agent log (slog.Default()).
	Logger *slog.Logger
}

var namePart = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

func (c Config) withDefaults() (Config, error) {
	if c.Bridge == "" {
		c.Bridge = "lpbuilddbr0"
	}
	if c.Subnet == "" {
		c.Subnet = "10.10.10.1/24"
	}
	if c.StoragePool == "" {
		c.StoragePool = "default"
	}
	if c.Profile == "" {
		c.Profile = "buildd-agent"
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 120 * time.Second
	}
	if c.Instance == "" {
		c.Instance = "default"
	}
	if c.NamePrefix == "" {
		c.NamePrefix = "lp"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if !namePart.MatchString(c.NamePrefix) || len(c.NamePrefix) > 30 {
		return c, fmt.Errorf("invalid LXD name prefix %q: want lower-case letters, digits and inner hyphens", c.NamePrefix)
	}
	if _, err := netip.ParsePrefix(c.Subnet); err != nil {
		return c, fmt.Errorf("invalid bridge subnet %q: %w", c.Subnet, err)
	}
	return c, nil
}

// network is the bridge addressing derived from Config.
type network struct {
	prefix    netip.Prefix // host address + prefix length, as configured
	host      netip.Addr   // the bridge (and proxy) address
	container netip.Addr
}

func planNetwork(subnet, address string) (network, error) {
	p, err := netip.ParsePrefix(subnet)
	if err != nil {
		return network{}, fmt.Errorf("invalid bridge subnet %q: %w", subnet, err)
	}
	if !p.Addr().Is4() {
		return network{}, fmt.Errorf("invalid bridge subnet %q: only IPv4 is supported", subnet)
	}
	n := network{prefix: p, host: p.Addr()}
	masked := p.Masked()
	if p.Addr() == masked.Addr() {
		return network{}, fmt.Errorf("invalid bridge subnet %q: the host address is the network address", subnet)
	}
	if address != "" {
		a, err := netip.ParseAddr(address)
		if err != nil {
			return network{}, fmt.Errorf("invalid container address %q: %w", address, err)
		}
		if !masked.Contains(a) || a == n.host || a == masked.Addr() || a == broadcast(masked) {
			return network{}, fmt.Errorf("invalid container address %q: not a host address of %s other than the bridge's", address, masked)
		}
		n.container = a
		return n, nil
	}
	// The reference's rule: the first host address that is not the bridge's.
	for a := masked.Addr().Next(); masked.Contains(a) && a != broadcast(masked); a = a.Next() {
		if a != n.host {
			n.container = a
			return n, nil
		}
	}
	return network{}, fmt.Errorf("invalid bridge subnet %q: no address left for the container", subnet)
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	bits := p.Bits()
	for i := bits; i < 32; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	return netip.AddrFrom4(b)
}

// Host is the agent's handle on an LXD daemon: it owns the storage pool,
// profile and bridge, the image cache, and makes one container per build.
type Host struct {
	cfg Config
	srv server
	log *slog.Logger
	net network
	fw  *firewall // nil without AgentPorts

	// importMu serialises image imports, so two builds on the same chroot
	// import it once.
	importMu sync.Mutex
	imports  atomic.Int64
}

// NewHost connects to LXD, ensures the storage pool, profile and bridge
// (idempotently) and removes what a previous run of this Instance left
// behind (containers, stale images, old profiles), never touching objects
// that do not carry its label.
func NewHost(ctx context.Context, cfg Config) (*Host, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c, err := connect(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to LXD: %w", err)
	}
	h, err := newHost(ctx, cfg, c)
	if err != nil {
		c.Disconnect()
		return nil, err
	}
	return h, nil
}

func newHost(ctx context.Context, cfg Config, srv server) (*Host, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n, err := planNetwork(cfg.Subnet, cfg.Address)
	if err != nil {
		return nil, err
	}
	h := &Host{cfg: cfg, srv: srv, log: cfg.Logger.With("component", "lxd", "instance", cfg.Instance), net: n}
	if len(cfg.AgentPorts) > 0 {
		h.fw = newFirewall(cfg.Bridge, cfg.Instance, cfg.AgentPorts, runFirewall)
	}
	if err := h.ensure(ctx); err != nil {
		return nil, err
	}
	if err := h.removeLeftovers(ctx); err != nil {
		return nil, err
	}
	return h, nil
}

// Close removes the firewall rules and drops the connection to LXD.
// Containers and cached images stay.
func (h *Host) Close() error {
	var err error
	if h.fw != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = h.fw.remove(ctx)
	}
	h.srv.Disconnect()
	return err
}

// Imports is how many images this Host has uploaded to LXD (the cache's
// misses), for tests and benchmarks.
func (h *Host) Imports() int64 { return h.imports.Load() }

// ProxyHost is the bridge address, where the host's services listen for the
// containers.
func (h *Host) ProxyHost() string { return h.net.host.String() }

// Factory makes the targets of the "lxd" backend.
func (h *Host) Factory() target.Factory {
	return func(ctx context.Context, spec target.Spec, opts target.Options) (target.Target, error) {
		return h.newContainer(spec, opts)
	}
}

// ensure creates or repairs the storage pool, the bridge and the profile.
// It runs at start and before each build, so a bridge deleted by hand or a
// profile edited by hand is back before the next container needs it.
func (h *Host) ensure(ctx context.Context) error {
	if err := h.ensurePool(); err != nil {
		return err
	}
	if err := h.ensureBridge(); err != nil {
		return err
	}
	if h.fw != nil {
		// Fail closed: no build without the agent's ports firewalled.
		if err := h.fw.ensure(ctx); err != nil {
			return err
		}
	}
	return h.ensureProfile()
}

func (h *Host) ensurePool() error {
	_, _, err := h.srv.GetStoragePool(h.cfg.StoragePool)
	if err == nil {
		return nil
	}
	if !isNotFound(err) {
		return fmt.Errorf("cannot get storage pool %q: %w", h.cfg.StoragePool, err)
	}
	h.log.Info("creating storage pool", "pool", h.cfg.StoragePool)
	err = h.srv.CreateStoragePool(api.StoragePoolsPost{
		Name:   h.cfg.StoragePool,
		Driver: "dir",
		StoragePoolPut: api.StoragePoolPut{
			Description: "buildd-agent build containers",
		},
	})
	if err != nil && !isConflict(err) {
		return fmt.Errorf("cannot create storage pool %q: %w", h.cfg.StoragePool, err)
	}
	return nil
}

// bridgeConfig is the part of the bridge's config the agent insists on.
func (h *Host) bridgeConfig() map[string]string {
	c := map[string]string{
		"ipv4.address": h.net.prefix.String(),
		"ipv4.nat":     "false",
		"ipv4.routing": "false",
		// No DHCP: containers get their address from the host side
		// (raw.lxc), and no lease may collide with it.
		"ipv4.dhcp":    "false",
		"ipv6.address": "none",
	}
	if h.cfg.NAT {
		c["ipv4.nat"] = "true"
		c["ipv4.routing"] = "true"
	}
	return c
}

func (h *Host) ensureBridge() error {
	want := h.bridgeConfig()
	nw, etag, err := h.srv.GetNetwork(h.cfg.Bridge)
	if isNotFound(err) {
		h.log.Info("creating bridge", "bridge", h.cfg.Bridge, "subnet", h.net.prefix.String(), "nat", h.cfg.NAT)
		err = h.srv.CreateNetwork(api.NetworksPost{
			Name: h.cfg.Bridge,
			Type: "bridge",
			NetworkPut: api.NetworkPut{
				Config:      want,
				Description: "buildd-agent build containers",
			},
		})
		if err == nil {
			return nil
		}
		if !isConflict(err) {
			return fmt.Errorf("cannot create bridge %q: %w", h.cfg.Bridge, err)
		}
		// Someone else created it meanwhile: check it like an old one.
		nw, etag, err = h.srv.GetNetwork(h.cfg.Bridge)
	}
	if err != nil {
		return fmt.Errorf("cannot get bridge %q: %w", h.cfg.Bridge, err)
	}
	if nw.Type != "bridge" || !nw.Managed {
		return fmt.Errorf("cannot use network %q: it is a %s interface not managed by LXD", h.cfg.Bridge, nw.Type)
	}
	put := nw.Writable()
	changed := false
	for k, v := range want {
		if put.Config[k] != v {
			if put.Config == nil {
				put.Config = map[string]string{}
			}
			put.Config[k] = v
			changed = true
		}
	}
	if !changed {
		return nil
	}
	h.log.Warn("repairing bridge", "bridge", h.cfg.Bridge)
	if err := h.srv.UpdateNetwork(h.cfg.Bridge, put, etag); err != nil {
		return fmt.Errorf("cannot repair bridge %q: %w", h.cfg.Bridge, err)
	}
	return nil
}

// profilePut is the agent's profile: the settings every build container
// shares. Per-container settings (address, hostname, privilege) are in the
// container's own config.
func (h *Host) profilePut() api.ProfilePut {
	return api.ProfilePut{
		Description: "buildd-agent build containers",
		Config: map[string]string{
			labelInstance:         h.cfg.Instance,
			"security.privileged": "false",
			"security.nesting":    "true",
		},
		Devices: map[string]map[string]string{
			"eth0": {"type": "nic", "nictype": "bridged", "parent": h.cfg.Bridge, "name": "eth0"},
			"root": {"type": "disk", "path": "/", "pool": h.cfg.StoragePool},
		},
	}
}

func (h *Host) ensureProfile() error {
	want := h.profilePut()
	p, etag, err := h.srv.GetProfile(h.cfg.Profile)
	if isNotFound(err) {
		h.log.Info("creating profile", "profile", h.cfg.Profile)
		err = h.srv.CreateProfile(api.ProfilesPost{Name: h.cfg.Profile, ProfilePut: want})
		if err == nil || !isConflict(err) {
			if err != nil {
				return fmt.Errorf("cannot create profile %q: %w", h.cfg.Profile, err)
			}
			return nil
		}
		p, etag, err = h.srv.GetProfile(h.cfg.Profile)
	}
	if err != nil {
		return fmt.Errorf("cannot get profile %q: %w", h.cfg.Profile, err)
	}
	if equalStringMaps(p.Config, want.Config) && equalDevices(p.Devices, want.Devices) {
		return nil
	}
	h.log.Warn("repairing profile", "profile", h.cfg.Profile)
	if err := h.srv.UpdateProfile(h.cfg.Profile, want, etag); err != nil {
		return fmt.Errorf("cannot repair profile %q: %w", h.cfg.Profile, err)
	}
	return nil
}

func equalStringMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func equalDevices(a, b map[string]map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !equalStringMaps(v, w) {
			return false
		}
	}
	return true
}

// removeLeftovers is crash safety: whatever a previous run of this Instance
// left (containers of interrupted builds, profiles of an older
// configuration, images without a complete cache entry) is removed. Objects
// without this Instance's label are never touched; complete cached images
// stay (they are the cache) but are pruned by age and count.
func (h *Host) removeLeftovers(ctx context.Context) error {
	var errs []error
	insts, err := h.srv.GetInstances(api.InstanceTypeContainer)
	if err != nil {
		return fmt.Errorf("cannot list containers: %w", err)
	}
	for _, inst := range insts {
		if inst.Config[labelInstance] != h.cfg.Instance {
			continue
		}
		h.log.Warn("removing leftover container", "container", inst.Name, "build", inst.Config[labelBuildID])
		if err := h.deleteContainer(ctx, inst.Name); err != nil {
			errs = append(errs, err)
		}
	}
	profiles, err := h.srv.GetProfiles()
	if err != nil {
		return fmt.Errorf("cannot list profiles: %w", err)
	}
	for _, p := range profiles {
		if p.Config[labelInstance] != h.cfg.Instance || p.Name == h.cfg.Profile || len(p.UsedBy) > 0 {
			continue
		}
		h.log.Warn("removing leftover profile", "profile", p.Name)
		if err := h.srv.DeleteProfile(p.Name); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("cannot delete profile %q: %w", p.Name, err))
		}
	}
	if err := h.pruneImages(ctx, ""); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// deleteContainer force-stops and deletes a container; a missing one is fine.
func (h *Host) deleteContainer(ctx context.Context, name string) error {
	inst, _, err := h.srv.GetInstance(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot get container %q: %w", name, err)
	}
	if inst.StatusCode != api.Stopped {
		op, err := h.srv.UpdateInstanceState(name, api.InstanceStatePut{Action: "stop", Force: true, Timeout: -1}, "")
		if err := waitOp(ctx, op, err); err != nil && !isNotFound(err) {
			return fmt.Errorf("cannot stop container %q: %w", name, err)
		}
	}
	op, err := h.srv.DeleteInstance(name)
	if err := waitOp(ctx, op, err); err != nil && !isNotFound(err) {
		return fmt.Errorf("cannot delete container %q: %w", name, err)
	}
	return nil
}

// ourImages lists the images labelled with this Instance.
func (h *Host) ourImages() ([]api.Image, error) {
	all, err := h.srv.GetImages()
	if err != nil {
		return nil, fmt.Errorf("cannot list images: %w", err)
	}
	var ours []api.Image
	for _, img := range all {
		if img.Properties[labelInstance] == h.cfg.Instance {
			ours = append(ours, img)
		}
	}
	return ours, nil
}

// pruneImages deletes this Instance's images that are incomplete, older
// than ImageMaxAge (by last use) or beyond the ImageMaxCount most recently
// used. keep (the image of the current build) is never deleted.
func (h *Host) pruneImages(ctx context.Context, keep string) error {
	ours, err := h.ourImages()
	if err != nil {
		return err
	}
	var errs []error
	for _, fp := range imagesToPrune(ours, keep, h.cfg.ImageMaxAge, h.cfg.ImageMaxCount, time.Now()) {
		h.log.Info("pruning cached image", "fingerprint", fp)
		op, err := h.srv.DeleteImage(fp)
		if err := waitOp(ctx, op, err); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("cannot delete image %q: %w", fp, err))
		}
	}
	return errors.Join(errs...)
}

// imagesToPrune is pruneImages' policy, pure for unit tests.
func imagesToPrune(imgs []api.Image, keep string, maxAge time.Duration, maxCount int, now time.Time) []string {
	lastUse := func(img api.Image) time.Time {
		if img.LastUsedAt.After(img.UploadedAt) {
			return img.LastUsedAt
		}
		return img.UploadedAt
	}
	sorted := append([]api.Image(nil), imgs...)
	sort.SliceStable(sorted, func(i, j int) bool { return lastUse(sorted[i]).After(lastUse(sorted[j])) })
	var out []string
	kept := 0
	if keep != "" {
		kept = 1 // the current build's image counts against the limit
	}
	for _, img := range sorted {
		if img.Fingerprint == keep {
			continue
		}
		switch {
		case img.Properties[labelSHA1] == "":
			out = append(out, img.Fingerprint) // not a cache entry: a leftover
		case maxAge > 0 && now.Sub(lastUse(img)) > maxAge:
			out = append(out, img.Fingerprint)
		case maxCount > 0 && kept >= maxCount:
			out = append(out, img.Fingerprint)
		default:
			kept++
		}
	}
	return out
}

// logf writes one progress line to a build log (nil-safe).
func logf(w io.Writer, format string, args ...any) {
	if w == nil {
		return
	}
	fmt.Fprintf(w, format+"\n", args...)
}

// hostIdentity is what the container copies from the host.
type hostIdentity struct {
	hostname, fqdn string
	resolvConf     []byte
	resolvMode     os.FileMode
}
