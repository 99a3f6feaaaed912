package agent

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Problem is one thing wrong with a configuration file.
type Problem struct {
	// Key is the dotted key ("builder.port"), or the section, or "" for a
	// problem of the file as a whole.
	Key string
	// Line is the 1-based line in the file the key is on; 0 when the key
	// is not in the file (a default or derived value).
	Line int
	Msg  string
}

func (p Problem) String() string {
	var sb strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&sb, "line %d: ", p.Line)
	}
	if p.Key != "" {
		sb.WriteString(p.Key + ": ")
	}
	sb.WriteString(p.Msg)
	return sb.String()
}

// ConfigErrors are all the problems found in a configuration file, in file
// order. It is the error ParseConfig and LoadConfig return for bad input.
type ConfigErrors []Problem

func (e ConfigErrors) Error() string {
	lines := make([]string, len(e))
	for i, p := range e {
		lines[i] = p.String()
	}
	return "invalid configuration: " + strings.Join(lines, "; ")
}

// geteuid is a seam for tests of the non-root defaults.
var geteuid = os.Geteuid

// LoadConfig reads a configuration file: see ParseConfig.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read configuration: %w", err)
	}
	return ParseConfig(data)
}

// ParseConfig reads a configuration: the embedded defaults (default.toml)
// overlaid with data. Unknown keys, wrong types and invalid values are
// errors; all of them are returned at once as ConfigErrors, each with its
// key and line. Derived defaults are filled in: file_cache_dir and
// build_home under state_dir, and, for a user other than root who did not
// set state_dir, a state directory under $XDG_STATE_HOME (or
// ~/.local/state), so that `buildd-agent run` works without privileges.
func ParseConfig(data []byte) (*Config, error) {
	cfg := new(Config)
	if _, err := toml.Decode(string(DefaultConfigTOML), cfg); err != nil {
		return nil, fmt.Errorf("cannot parse the embedded default configuration: %w", err)
	}
	var tree map[string]toml.Primitive
	md, err := toml.Decode(string(data), &tree)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			line := pe.Position.Line
			if st := pe.Position.Start; st >= 0 && st <= len(data) {
				// The parser counts an unexpected newline as on the next
				// line; the offset says where the problem is.
				line = 1 + bytes.Count(data[:st], []byte("\n"))
			}
			return nil, ConfigErrors{{Key: pe.LastKey, Line: line, Msg: pe.Message}}
		}
		return nil, ConfigErrors{{Msg: err.Error()}}
	}
	lines := keyLines(data)
	c := configChecker{md: &md, lines: lines}
	c.decode(cfg, tree)
	c.derive(cfg)
	c.validate(cfg)
	if len(c.problems) > 0 {
		slices.SortStableFunc(c.problems, func(a, b Problem) int { return a.Line - b.Line })
		return nil, c.problems
	}
	return cfg, nil
}

type configChecker struct {
	md       *toml.MetaData
	lines    map[string]int
	problems ConfigErrors
}

func (c *configChecker) add(key, format string, args ...any) {
	c.problems = append(c.problems, Problem{Key: key, Line: c.lines[key], Msg: fmt.Sprintf(format, args...)})
}

// tomlFields maps the toml tags of a struct type to field indexes.
func tomlFields(t reflect.Type) map[string]int {
	fields := map[string]int{}
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ","); tag != "" && tag != "-" {
			fields[tag] = i
		}
	}
	return fields
}

// decode overlays the file on cfg key by key, so that one bad value does
// not hide the next.
func (c *configChecker) decode(cfg *Config, tree map[string]toml.Primitive) {
	root := reflect.ValueOf(cfg).Elem()
	sections := tomlFields(root.Type())
	for name, prim := range tree {
		si, ok := sections[name]
		// Implicit tables (from dotted keys) have no type of their own.
		isTable := c.md.Type(name) == "Hash" || c.md.Type(name) == ""
		if !ok {
			if isTable {
				c.add(name, "unknown section [%s]", name)
			} else {
				c.add(name, "unknown key (keys belong in a section such as [builder])")
			}
			continue
		}
		var keys map[string]toml.Primitive
		if err := c.md.PrimitiveDecode(prim, &keys); err != nil || !isTable {
			c.add(name, "must be a table ([%s])", name)
			continue
		}
		section := root.Field(si)
		fields := tomlFields(section.Type())
		for key, kprim := range keys {
			full := name + "." + key
			fi, ok := fields[key]
			if !ok {
				c.add(full, "unknown key")
				continue
			}
			field := section.Field(fi)
			v := reflect.New(field.Type())
			if err := c.md.PrimitiveDecode(kprim, v.Interface()); err != nil {
				c.add(full, "%s", tomlMessage(err))
				continue
			}
			field.Set(v.Elem())
		}
	}
}

var tomlErrPrefix = regexp.MustCompile(`^toml: (line \d+ )?(\(last key "[^"]*"\): )?`)

// tomlMessage is a decoding error without the position the Problem carries.
func tomlMessage(err error) string {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return "invalid value: " + pe.Message
	}
	msg := tomlErrPrefix.ReplaceAllString(err.Error(), "")
	msg = strings.Replace(msg, "incompatible types: TOML value has type ", "wrong type: the value is ", 1)
	return strings.Replace(msg, "; destination has type ", ", expected ", 1)
}

// derive fills the defaults that depend on other values or the user.
func (c *configChecker) derive(cfg *Config) {
	b := &cfg.Builder
	if !c.md.IsDefined("builder", "state_dir") && geteuid() != 0 {
		if dir := userStateDir(); dir != "" {
			b.StateDir = dir
		}
	}
	if b.FileCacheDir == "" && b.StateDir != "" {
		b.FileCacheDir = filepath.Join(b.StateDir, "filecache")
	}
	if b.BuildHome == "" && b.StateDir != "" {
		b.BuildHome = filepath.Join(b.StateDir, "builds")
	}
}

// userStateDir is $XDG_STATE_HOME/buildd-agent, else
// ~/.local/state/buildd-agent, else "".
func userStateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "buildd-agent")
	}
	if home, err := os.UserHomeDir(); err == nil && filepath.IsAbs(home) {
		return filepath.Join(home, ".local", "state", "buildd-agent")
	}
	return ""
}

var (
	archTag    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	ifaceName  = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"text", "json"}
)

// validate checks values that decode but make no sense.
func (c *configChecker) validate(cfg *Config) {
	b := cfg.Builder
	if len(b.Architectures) == 0 {
		c.add("builder.architectures", "must name at least one architecture")
	}
	for _, a := range b.Architectures {
		if !archTag.MatchString(a) {
			c.add("builder.architectures", "%q is not an architecture tag (like amd64)", a)
		}
	}
	c.ipAddress("builder.bind_address", b.BindAddress, false)
	c.port("builder.port", b.Port)
	c.absPath("builder.state_dir", b.StateDir)
	// Derived from state_dir unless set: only their own values can be wrong.
	if c.md.IsDefined("builder", "file_cache_dir") && b.FileCacheDir != "" {
		c.absPath("builder.file_cache_dir", b.FileCacheDir)
	}
	if c.md.IsDefined("builder", "build_home") && b.BuildHome != "" {
		c.absPath("builder.build_home", b.BuildHome)
	}
	c.oneOf("builder.backend", b.Backend, []string{"lxd", "chroot"})
	c.positive("builder.abort_timeout", b.AbortTimeout)
	if b.ShutdownGrace.Duration < 0 {
		c.add("builder.shutdown_grace", "must not be negative (0 stops a running build at once)")
	}
	if b.GitMirrorMaxBytes < 0 {
		c.add("builder.git_mirror_max_bytes", "must not be negative (0 keeps every mirror)")
	}
	if b.FileCacheMaxAge.Duration < 0 {
		c.add("builder.file_cache_max_age", "must not be negative (0 keeps files forever)")
	}
	if b.MetricsAddress != "" {
		if host, port, err := net.SplitHostPort(b.MetricsAddress); err != nil {
			c.add("builder.metrics_address", "must be host:port: %v", err)
		} else {
			c.ipAddress("builder.metrics_address", host, true)
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				c.add("builder.metrics_address", "port %q is not between 1 and 65535", port)
			}
		}
	}

	p := cfg.Proxy
	c.ipAddress("proxy.bind_address", p.BindAddress, true)
	c.port("proxy.port", p.Port)
	c.httpURL("proxy.snapstore", p.SnapStore)
	c.httpURL("proxy.apt", p.Apt)
	c.httpURL("proxy.clamavdatabase", p.ClamAVDatabase)

	l := cfg.LXD
	if l.Socket != "" && !filepath.IsAbs(l.Socket) {
		c.add("lxd.socket", "must be an absolute path")
	}
	if l.RemoteURL != "" {
		if u, err := url.Parse(l.RemoteURL); err != nil || u.Scheme != "https" || u.Host == "" {
			c.add("lxd.remote_url", "must be an https:// URL")
		} else if l.TLSClientCert == "" || l.TLSClientKey == "" {
			c.add("lxd.remote_url", "a remote LXD needs tls_client_cert and tls_client_key (a client certificate it trusts)")
		}
	}
	for _, kv := range [][2]string{{"lxd.tls_client_cert", l.TLSClientCert}, {"lxd.tls_client_key", l.TLSClientKey}, {"lxd.tls_server_cert", l.TLSServerCert}} {
		key, v := kv[0], kv[1]
		if v == "" {
			continue
		}
		if l.RemoteURL == "" {
			c.add(key, "is used only with remote_url")
		} else if !filepath.IsAbs(v) {
			c.add(key, "must be an absolute path")
		}
	}
	if !ifaceName.MatchString(l.Bridge) {
		c.add("lxd.bridge", "%q is not a network interface name (1 to 15 letters, digits, '_', '-', '.')", l.Bridge)
	}
	if pfx, err := netip.ParsePrefix(l.Subnet); err != nil {
		c.add("lxd.subnet", "must be the bridge's address and prefix length, like 10.10.10.1/24: %v", err)
	} else if !pfx.Addr().Is4() || pfx.Bits() < 8 || pfx.Bits() > 30 {
		c.add("lxd.subnet", "must be an IPv4 address with a prefix length from 8 to 30")
	} else if pfx.Addr() == pfx.Masked().Addr() {
		c.add("lxd.subnet", "%s is the network address; give the bridge's own address, like %s",
			pfx.Addr(), pfx.Masked().Addr().Next())
	}
	c.nonEmpty("lxd.storage_pool", l.StoragePool)
	c.nonEmpty("lxd.profile", l.Profile)
	c.positive("lxd.ready_timeout", l.ReadyTimeout)
	c.positive("lxd.image_max_age", l.ImageMaxAge)
	if l.ImageMaxCount <= 0 {
		c.add("lxd.image_max_count", "must be at least 1")
	}

	c.nonEmpty("chroot.idmap_user", cfg.Chroot.IDMapUser)
	c.nonEmpty("sbuild.user", cfg.Sbuild.User)
	if r := cfg.TranslationTemplates.ResultArchive; r == "" || strings.ContainsAny(r, "/\x00") || r == "." || r == ".." || strings.HasPrefix(r, "-") {
		c.add("translationtemplatesmanager.resultarchive", "must be a plain file name, like translation-templates.tar.gz")
	}

	if cfg.Limits.RequestBodyBytes <= 0 {
		c.add("limits.request_body_bytes", "must be positive")
	}
	if cfg.Limits.LogBytes < 4096 {
		c.add("limits.log_bytes", "must be at least 4096")
	}
	for _, l := range []struct {
		key string
		v   int64
	}{
		{"limits.result_file_bytes", cfg.Limits.ResultFileBytes},
		{"limits.result_total_bytes", cfg.Limits.ResultTotalBytes},
		{"limits.download_bytes", cfg.Limits.DownloadBytes},
	} {
		if l.v <= 0 {
			c.add(l.key, "must be positive")
		}
	}
	if cfg.Limits.MinFreeBytes < 0 {
		c.add("limits.min_free_bytes", "must not be negative (0 does not check)")
	}

	c.oneOf("log.level", cfg.Log.Level, logLevels)
	c.oneOf("log.format", cfg.Log.Format, logFormats)
}

func (c *configChecker) port(key string, p int) {
	if p < 1 || p > 65535 {
		c.add(key, "%d is not a port number (1 to 65535)", p)
	}
}

func (c *configChecker) ipAddress(key, s string, emptyOK bool) {
	if s == "" && emptyOK {
		return
	}
	if _, err := netip.ParseAddr(s); err != nil {
		c.add(key, "%q is not an IP address (use 0.0.0.0 or :: for all interfaces)", s)
	}
}

func (c *configChecker) absPath(key, s string) {
	if !filepath.IsAbs(s) {
		c.add(key, "%q is not an absolute path", s)
	}
}

func (c *configChecker) oneOf(key, s string, allowed []string) {
	if !slices.Contains(allowed, s) {
		c.add(key, "%q is not one of %s", s, strings.Join(allowed, ", "))
	}
}

func (c *configChecker) positive(key string, d Duration) {
	if d.Duration <= 0 {
		c.add(key, "must be a positive duration (like %q)", (90 * time.Second).String())
	}
}

func (c *configChecker) nonEmpty(key, s string) {
	if strings.TrimSpace(s) == "" {
		c.add(key, "must not be empty")
	}
}

func (c *configChecker) httpURL(key, s string) {
	if s == "" {
		return
	}
	if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		c.add(key, "%q is not an http:// or https:// URL", s)
	}
}

// keyLines maps every table and dotted key of a TOML file to the line it is
// defined on. BurntSushi/toml keeps key positions private, so the file is
// scanned: table headers, "key = value" lines, skipping the inside of
// multi-line strings and arrays. It serves error messages only.
func keyLines(data []byte) map[string]int {
	lines := map[string]int{}
	table := ""
	depth := 0     // open brackets of a multi-line array
	inString := "" // the delimiter of an open multi-line string
	for i, raw := range bytes.Split(data, []byte("\n")) {
		n := i + 1
		line := strings.TrimSpace(string(raw))
		if inString != "" {
			if strings.Contains(line, inString) {
				inString = ""
			}
			continue
		}
		if depth > 0 {
			depth += bracketDepth(line)
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		if line[0] == '[' {
			header := strings.Trim(stripComment(line), "[] \t")
			table = joinKey(splitKey(header))
			if _, ok := lines[table]; !ok {
				lines[table] = n
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		full := joinKey(splitKey(k))
		if table != "" {
			full = table + "." + full
		}
		if _, ok := lines[full]; !ok {
			lines[full] = n
		}
		v = strings.TrimSpace(v)
		for _, delim := range []string{`"""`, `'''`} {
			if strings.HasPrefix(v, delim) && !strings.Contains(v[3:], delim) {
				inString = delim
			}
		}
		if strings.HasPrefix(v, "[") {
			depth = bracketDepth(v)
		}
	}
	return lines
}

// splitKey splits a dotted TOML key, unquoting its parts.
func splitKey(k string) []string {
	var parts []string
	for _, p := range strings.Split(k, ".") {
		p = strings.TrimSpace(p)
		if uq, err := strconv.Unquote(p); err == nil {
			p = uq
		} else {
			p = strings.Trim(p, `'`)
		}
		parts = append(parts, p)
	}
	return parts
}

func joinKey(parts []string) string { return strings.Join(parts, ".") }

// stripComment drops a trailing comment (not inside quotes) from a line.
func stripComment(line string) string {
	quote := byte(0)
	for i := 0; i < len(line); i++ {
		switch ch := line[i]; {
		case quote != 0:
			if ch == quote {
				quote = 0
			}
		case ch == '"' || ch == '\'':
			quote = ch
		case ch == '#':
			return line[:i]
		}
	}
	return line
}

// bracketDepth is the change in array nesting over a line, ignoring
// brackets in strings and comments.
func bracketDepth(line string) int {
	d := 0
	line = stripComment(line)
	quote := byte(0)
	for i := 0; i < len(line); i++ {
		switch ch := line[i]; {
		case quote != 0:
			if ch == '\\' && quote == '"' {
				i++
			} else if ch == quote {
				quote = 0
			}
		case ch == '"' || ch == '\'':
			quote = ch
		case ch == '[':
			d++
		case ch == ']':
			d--
		}
	}
	return d
}
