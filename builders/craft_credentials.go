package builders

// craft's registry credentials (build_craft.py's setup_cargo_credentials
// and setup_maven_credentials). environment_variables is never exported
// as it is: only what these derive from it reaches the build.
//
//	CARGO_<N>_URL=u            CARGO_REGISTRIES_<N>_INDEX=u
//	CARGO_<N>_READ_AUTH=u:tok  CARGO_REGISTRIES_<N>_TOKEN=Bearer tok
//	(any of them)              CARGO_REGISTRY_GLOBAL_CREDENTIAL_PROVIDERS=cargo:token
//	MAVEN_<N>_URL, MAVEN_<N>_READ_AUTH=user:tok
//	                           /home/buildd/<name>/.m2/settings.xml: servers <n> and
//	                           <n>-snapshots, a profile <n>, a mirror <n> of * (n lower-cased)
//
// N is the first "_"-separated word after CARGO_ for Cargo, everything
// between MAVEN_ and the suffix for Maven, as in the reference. Every
// READ_AUTH value and its token are masked in the build log.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// craftCredentials is what a craft build derives from environment_variables.
type craftCredentials struct {
	// cargo is the Cargo environment, "KEY=VALUE" sorted by key, the
	// global credential provider last.
	cargo []string
	// maven is settings.xml's text ("" when no MAVEN_ variable is given).
	maven string
	// tokens are the values the build log must never show.
	tokens []string
}

// checkEnvironmentVariables refuses what cannot be an environment
// variable at all; the values' meaning is checked when the build uses
// them, as the reference does.
func checkEnvironmentVariables(p *ArgParser, vars map[string]string) {
	for k, v := range vars {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			p.Fail("environment_variables", "%q is not a variable name", k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			p.Fail("environment_variables", "the value of %q contains a NUL byte", k)
		}
	}
}

// pySuffixSlice is Python's s[start:-endTrim] (empty when they cross).
func pySuffixSlice(s string, start, endTrim int) string {
	end := len(s) - endTrim
	if start >= end {
		return ""
	}
	return s[start:end]
}

// newCraftCredentials derives the credentials. The result is never nil:
// its tokens are to be masked even when err (a READ_AUTH value that is
// not USER:TOKEN, the reference's IndexError or ValueError) fails the build.
func newCraftCredentials(vars map[string]string) (*craftCredentials, error) {
	c := &craftCredentials{}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if (strings.HasPrefix(k, "CARGO_") || strings.HasPrefix(k, "MAVEN_")) && strings.HasSuffix(k, "_READ_AUTH") {
			v := vars[k]
			c.tokens = append(c.tokens, v)
			if _, tok, ok := strings.Cut(v, ":"); ok {
				c.tokens = append(c.tokens, tok)
			}
		}
	}
	var errs []error

	cargo := map[string]string{}
	for _, k := range keys {
		if !strings.HasPrefix(k, "CARGO_") {
			continue
		}
		name, _, _ := strings.Cut(k[len("CARGO_"):], "_")
		v := vars[k]
		switch {
		case strings.HasSuffix(k, "_URL"):
			cargo["CARGO_REGISTRIES_"+name+"_INDEX"] = v
		case strings.HasSuffix(k, "_READ_AUTH"):
			_, tok, ok := strings.Cut(v, ":")
			if !ok {
				errs = append(errs, fmt.Errorf("environment variable %s is not USER:TOKEN", k))
				continue
			}
			cargo["CARGO_REGISTRIES_"+name+"_TOKEN"] = "Bearer " + tok
		}
	}
	if len(cargo) > 0 {
		ck := make([]string, 0, len(cargo))
		for k := range cargo {
			ck = append(ck, k)
		}
		sort.Strings(ck)
		for _, k := range ck {
			c.cargo = append(c.cargo, k+"="+cargo[k])
		}
		c.cargo = append(c.cargo, "CARGO_REGISTRY_GLOBAL_CREDENTIAL_PROVIDERS=cargo:token")
	}

	type mavenRepo struct {
		url, user, password string
		hasURL, hasAuth     bool
	}
	var order []string
	repos := map[string]*mavenRepo{}
	repo := func(name string) *mavenRepo {
		r, ok := repos[name]
		if !ok {
			r = &mavenRepo{}
			repos[name] = r
			order = append(order, name)
		}
		return r
	}
	anyMaven := false
	for _, k := range keys {
		if !strings.HasPrefix(k, "MAVEN_") {
			continue
		}
		anyMaven = true
		v := vars[k]
		switch {
		case strings.HasSuffix(k, "_URL"):
			r := repo(strings.ToLower(pySuffixSlice(k, len("MAVEN_"), len("_URL"))))
			r.url, r.hasURL = v, true
		case strings.HasSuffix(k, "_READ_AUTH"):
			parts := strings.Split(v, ":")
			if len(parts) != 2 {
				errs = append(errs, fmt.Errorf("environment variable %s is not USER:TOKEN", k))
				continue
			}
			r := repo(strings.ToLower(pySuffixSlice(k, len("MAVEN_"), len("_READ_AUTH"))))
			r.user, r.password, r.hasAuth = parts[0], parts[1], true
		}
	}
	if anyMaven {
		var sb strings.Builder
		sb.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<settings xmlns="http://maven.apache.org/SETTINGS/1.0.0"
          xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
          xsi:schemaLocation="http://maven.apache.org/SETTINGS/1.0.0 http://maven.apache.org/xsd/settings-1.0.0.xsd">
    <servers>
`)
		for _, name := range order {
			r := repos[name]
			if !r.hasAuth {
				continue
			}
			n, u, pw := xmlText(name), xmlText(r.user), xmlText(r.password)
			fmt.Fprintf(&sb, `        <server>
            <id>%[1]s</id>
            <username>%[2]s</username>
            <password>%[3]s</password>
        </server>
        <server>
            <id>%[1]s-snapshots</id>
            <username>%[2]s</username>
            <password>%[3]s</password>
        </server>
`, n, u, pw)
		}
		sb.WriteString("    </servers>\n    <profiles>\n")
		for _, name := range order {
			r := repos[name]
			if !r.hasURL {
				continue
			}
			fmt.Fprintf(&sb, `        <profile>
            <id>%[1]s</id>
            <repositories>
                <repository>
                    <id>%[1]s</id>
                    <name>%[1]s</name>
                    <url>%[2]s</url>
                    <snapshots>
                        <enabled>false</enabled>
                    </snapshots>
                </repository>
                <repository>
                    <id>%[1]s-snapshots</id>
                    <name>%[1]s</name>
                    <url>%[2]s</url>
                    <snapshots>
                        <enabled>true</enabled>
                    </snapshots>
                </repository>
            </repositories>
            <pluginRepositories>
                <pluginRepository>
                    <id>%[1]s</id>
                    <name>%[1]s</name>
                    <url>%[2]s</url>
                    <snapshots>
                        <enabled>false</enabled>
                    </snapshots>
                </pluginRepository>
                <pluginRepository>
                    <id>%[1]s-snapshots</id>
                    <name>%[1]s</name>
                    <url>%[2]s</url>
                    <snapshots>
                        <enabled>true</enabled>
                    </snapshots>
                </pluginRepository>
            </pluginRepositories>
        </profile>
`, xmlText(name), xmlText(r.url))
		}
		sb.WriteString("    </profiles>\n    <mirrors>\n")
		for _, name := range order {
			r := repos[name]
			if !r.hasURL {
				continue
			}
			fmt.Fprintf(&sb, `        <mirror>
            <id>%[1]s</id>
            <name>Maven Repository Manager running on %[1]s</name>
            <url>%[2]s</url>
            <mirrorOf>*</mirrorOf>
        </mirror>
`, xmlText(name), xmlText(r.url))
		}
		sb.WriteString("    </mirrors>\n</settings>\n")
		c.maven = sb.String()
	}
	return c, errors.Join(errs...)
}

// secrets are the strings to mask.
func (c *craftCredentials) secrets() []string {
	if c == nil {
		return nil
	}
	return c.tokens
}

// xmlText escapes XML's metacharacters. The reference writes values raw,
// which makes settings.xml unreadable for a token with '<' or '&'; values
// without them come out the same.
func xmlText(s string) string {
	var b bytes.Buffer
	for _, r := range s {
		switch r {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '"':
			b.WriteString("&quot;")
		case '\'':
			b.WriteString("&apos;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// mavenSettingsMode: settings.xml holds the tokens (the build runs as root).
const mavenSettingsMode = 0o600

// checkM2 refuses a source tree whose .m2 (or .m2/settings.xml) is not a
// plain directory (file): writing the credentials there would follow a
// link the repository planted. Nothing runs in the target between the
// checkout and this check, so the target's view is the checkout's.
func checkM2(ctx context.Context, t target.Target, sourceDir string) error {
	fi, err := t.Stat(ctx, sourceDir+"/.m2")
	if errors.Is(err, target.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot look at .m2 in the source tree: %w", err)
	}
	if !fi.Mode.IsDir() {
		return errors.New("refusing to write .m2/settings.xml: .m2 in the source tree is not a directory (a symlink?)")
	}
	fi, err = t.Stat(ctx, sourceDir+"/.m2/settings.xml")
	if errors.Is(err, target.ErrNotExist) {
		return nil
	}
	if err != nil || !fi.Mode.IsRegular() {
		return errors.New("refusing to write .m2/settings.xml: the source tree has one that is not a regular file")
	}
	return nil
}

// writeMavenSettings writes <sourceDir>/.m2/settings.xml.
func writeMavenSettings(ctx context.Context, b *ContainerBuild, sourceDir, text string) *Failure {
	if err := checkM2(ctx, b.Target, sourceDir); err != nil {
		return b.ctxFail(ctx, BuildPackageFail, "%w", err)
	}
	dir := sourceDir + "/.m2"
	if f := b.Run(ctx, BuildPackageFail, target.Command{Args: []string{"mkdir", "-p", dir}}); f != nil {
		return f
	}
	if err := b.Target.CopyIn(ctx, strings.NewReader(text), dir+"/settings.xml", 0, 0, mavenSettingsMode); err != nil {
		return b.ctxFail(ctx, BuildPackageFail, "cannot write %s/settings.xml: %w", dir, err)
	}
	return nil
}
