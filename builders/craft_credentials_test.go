package builders

import (
	"context"
	"encoding/xml"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCraftCargoCredentials(t *testing.T) {
	c, err := newCraftCredentials(map[string]string{
		"CARGO_ARTIFACTORY1_URL":       "https://art.example/api/cargo/idx",
		"CARGO_ARTIFACTORY1_READ_AUTH": "user:tok:en123",
		"CARGO_HOME":                   "/x", // neither suffix: ignored
		"OTHER":                        "not exported",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"CARGO_REGISTRIES_ARTIFACTORY1_INDEX=https://art.example/api/cargo/idx",
		"CARGO_REGISTRIES_ARTIFACTORY1_TOKEN=Bearer tok:en123",
		"CARGO_REGISTRY_GLOBAL_CREDENTIAL_PROVIDERS=cargo:token",
	}
	if diff := cmp.Diff(want, c.cargo); diff != "" {
		t.Errorf("cargo env (-want +got):\n%s", diff)
	}
	if c.maven != "" {
		t.Errorf("settings.xml without MAVEN_ variables")
	}
	if !slices.Contains(c.tokens, "user:tok:en123") || !slices.Contains(c.tokens, "tok:en123") {
		t.Errorf("tokens = %q", c.tokens)
	}
	// The reference takes the first "_" word as the registry's name.
	c, _ = newCraftCredentials(map[string]string{"CARGO_MY_REG_URL": "u"})
	if c.cargo[0] != "CARGO_REGISTRIES_MY_INDEX=u" {
		t.Errorf("cargo = %q", c.cargo)
	}
	c, _ = newCraftCredentials(map[string]string{"FOO": "bar"})
	if len(c.cargo) != 0 || c.maven != "" {
		t.Errorf("no credentials, yet %q %q", c.cargo, c.maven)
	}
	c, err = newCraftCredentials(map[string]string{"CARGO_A_READ_AUTH": "tokenonly"})
	if err == nil || strings.Contains(err.Error(), "tokenonly") || !slices.Contains(c.tokens, "tokenonly") {
		t.Errorf("malformed READ_AUTH: err %v, tokens %q", err, c.tokens)
	}
}

// mavenWant is build_craft.py's settings.xml for one repository with both
// variables, character for character.
const mavenWant = `<?xml version="1.0" encoding="UTF-8"?>
<settings xmlns="http://maven.apache.org/SETTINGS/1.0.0"
          xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
          xsi:schemaLocation="http://maven.apache.org/SETTINGS/1.0.0 http://maven.apache.org/xsd/settings-1.0.0.xsd">
    <servers>
        <server>
            <id>artifactory1</id>
            <username>user</username>
            <password>token123</password>
        </server>
        <server>
            <id>artifactory1-snapshots</id>
            <username>user</username>
            <password>token123</password>
        </server>
    </servers>
    <profiles>
        <profile>
            <id>artifactory1</id>
            <repositories>
                <repository>
                    <id>artifactory1</id>
                    <name>artifactory1</name>
                    <url>https://canonical.example.com/artifactory/api/maven/maven-remote/</url>
                    <snapshots>
                        <enabled>false</enabled>
                    </snapshots>
                </repository>
                <repository>
                    <id>artifactory1-snapshots</id>
                    <name>artifactory1</name>
                    <url>https://canonical.example.com/artifactory/api/maven/maven-remote/</url>
                    <snapshots>
                        <enabled>true</enabled>
                    </snapshots>
                </repository>
            </repositories>
            <pluginRepositories>
                <pluginRepository>
                    <id>artifactory1</id>
                    <name>artifactory1</name>
                    <url>https://canonical.example.com/artifactory/api/maven/maven-remote/</url>
                    <snapshots>
                        <enabled>false</enabled>
                    </snapshots>
                </pluginRepository>
                <pluginRepository>
                    <id>artifactory1-snapshots</id>
                    <name>artifactory1</name>
                    <url>https://canonical.example.com/artifactory/api/maven/maven-remote/</url>
                    <snapshots>
                        <enabled>true</enabled>
                    </snapshots>
                </pluginRepository>
            </pluginRepositories>
        </profile>
    </profiles>
    <mirrors>
        <mirror>
            <id>artifactory1</id>
            <name>Maven Repository Manager running on artifactory1</name>
            <url>https://canonical.example.com/artifactory/api/maven/maven-remote/</url>
            <mirrorOf>*</mirrorOf>
        </mirror>
    </mirrors>
</settings>
`

func TestCraftMavenCredentials(t *testing.T) {
	c, err := newCraftCredentials(map[string]string{
		"MAVEN_ARTIFACTORY1_URL":       "https://canonical.example.com/artifactory/api/maven/maven-remote/",
		"MAVEN_ARTIFACTORY1_READ_AUTH": "user:token123",
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(mavenWant, c.maven); diff != "" {
		t.Errorf("settings.xml (-want +got):\n%s", diff)
	}
	if len(c.cargo) != 0 || !slices.Contains(c.tokens, "token123") {
		t.Errorf("cargo %q tokens %q", c.cargo, c.tokens)
	}
	// Metacharacters are escaped: the file stays XML.
	c, err = newCraftCredentials(map[string]string{"MAVEN_R_URL": "https://x/?a=1&b=<2>", "MAVEN_R_READ_AUTH": "u:p&<w"})
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Servers []struct {
			Password string `xml:"password"`
		} `xml:"servers>server"`
	}
	if err := xml.Unmarshal([]byte(c.maven), &v); err != nil || len(v.Servers) != 2 || v.Servers[0].Password != "p&<w" {
		t.Errorf("settings.xml does not parse back: %v %+v\n%s", err, v, c.maven)
	}
	// "user:token" with more or fewer colons is the reference's ValueError.
	if _, err := newCraftCredentials(map[string]string{"MAVEN_R_READ_AUTH": "a:b:c"}); err == nil {
		t.Errorf("a:b:c accepted")
	}
	// Python slices: MAVEN_URL names the repository "".
	c, err = newCraftCredentials(map[string]string{"MAVEN_URL": "u", "MAVEN_READ_AUTH": "a:b"})
	if err != nil || !strings.Contains(c.maven, "<id></id>") {
		t.Errorf("MAVEN_URL: %v\n%s", err, c.maven)
	}
}

func FuzzCraftCredentials(f *testing.F) {
	f.Add("CARGO_A_URL", "https://x", "CARGO_A_READ_AUTH", "u:t")
	f.Add("MAVEN_R_URL", "https://x/<&>", "MAVEN_R_READ_AUTH", "u:p")
	f.Add("MAVEN_URL", "", "MAVEN__READ_AUTH", "::")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		c, _ := newCraftCredentials(map[string]string{k1: v1, k2: v2})
		if c == nil {
			t.Fatal("nil credentials")
		}
		if c.maven != "" {
			var v any
			if err := xml.Unmarshal([]byte(c.maven), &v); err != nil && strings.ToValidUTF8(c.maven, "") == c.maven && !strings.ContainsAny(c.maven, "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\ufffe\uffff") {
				t.Fatalf("settings.xml is not XML: %v\n%s", err, c.maven)
			}
		}
		for _, kv := range c.cargo {
			k, _, ok := strings.Cut(kv, "=")
			if !ok || !strings.HasPrefix(k, "CARGO_REGIST") {
				t.Fatalf("odd cargo variable %q", kv)
			}
		}
	})
}

// TestCraftCredentialsInTheBuild: the Cargo variables reach sourcecraft,
// nothing else of environment_variables does, settings.xml is written
// under the source tree (not build_path), every token is masked.
func TestCraftCredentialsInTheBuild(t *testing.T) {
	s := installSeams(t)
	s.files = map[string]string{"sub/sourcecraft.yaml": "x"}
	args := craftBaseArgs("sourcecraft")
	args["environment_variables"] = map[string]any{
		"CARGO_ART_URL": "https://art.example/idx", "CARGO_ART_READ_AUTH": "bob:cargo-t0ken",
		"MAVEN_ART_URL": "https://art.example/maven/", "MAVEN_ART_READ_AUTH": "bob:maven-t0ken",
		"PLAIN": "not-exported",
	}
	ft, fe, res := runCraft(t, "craft", args, nil)
	if res.Status != BuildOK {
		t.Fatalf("status %s:\n%s", res.Status, fe.logText())
	}
	pack, _ := ft.command("sourcecraft", "pack")
	env := envMap(pack.Env)
	if env["CARGO_REGISTRIES_ART_TOKEN"] != "Bearer cargo-t0ken" || env["CARGO_REGISTRIES_ART_INDEX"] != "https://art.example/idx" ||
		env["CARGO_REGISTRY_GLOBAL_CREDENTIAL_PROVIDERS"] != "cargo:token" {
		t.Errorf("pack env = %q", pack.Env)
	}
	for _, k := range []string{"PLAIN", "CARGO_ART_READ_AUTH", "MAVEN_ART_READ_AUTH", "CARGO_ART_URL"} {
		if _, ok := env[k]; ok {
			t.Errorf("%s exported", k)
		}
	}
	f := ft.files["/home/buildd/hello/.m2/settings.xml"]
	if f == nil || f.mode != 0o600 || !strings.Contains(string(f.data), "<password>maven-t0ken</password>") {
		t.Errorf("settings.xml = %+v", f)
	}
	for _, tok := range []string{"cargo-t0ken", "maven-t0ken", "bob:cargo-t0ken"} {
		if !slices.Contains(fe.secrets, tok) {
			t.Errorf("%q not masked (secrets %q)", tok, fe.secrets)
		}
	}
	if i, j := slices.Index(ft.argvs(), "mkdir -p /home/buildd/hello/.m2"), slices.Index(ft.argvs(), "sourcecraft pack -v --destructive-mode"); i < 0 || i > j {
		t.Errorf(".m2 not made before pack: %q", ft.argvs())
	}
}

func TestCraftCredentialsRefusePlantedM2(t *testing.T) {
	s := installSeams(t)
	s.files = map[string]string{"README": "x"}
	inner := CheckoutFunc
	CheckoutFunc = func(ctx context.Context, repo, ref, dir string, opts CheckoutOptions) (string, error) {
		rev, err := inner(ctx, repo, ref, dir, opts)
		os.Symlink("/root", filepath.Join(dir, ".m2"))
		return rev, err
	}
	args := craftBaseArgs("sourcecraft")
	delete(args, "build_path")
	args["environment_variables"] = map[string]any{"MAVEN_A_READ_AUTH": "u:p"}
	ft, fe, res := runCraft(t, "craft", args, nil)
	if res.Status != BuildPackageFail || !strings.Contains(fe.logText(), ".m2 in the source tree is not a directory") {
		t.Errorf("status %s:\n%s", res.Status, fe.logText())
	}
	if _, ran := ft.command("sourcecraft"); ran {
		t.Errorf("sourcecraft ran")
	}
}

func TestCraftCredentialsMalformedFailsTheBuild(t *testing.T) {
	s := installSeams(t)
	s.files = map[string]string{"sub/x": "x"}
	args := craftBaseArgs("sourcecraft")
	args["environment_variables"] = map[string]any{"CARGO_A_READ_AUTH": "n0colon-secret"}
	_, fe, res := runCraft(t, "craft", args, nil)
	if res.Status != BuildPackageFail || !strings.Contains(fe.logText(), "CARGO_A_READ_AUTH is not USER:TOKEN") {
		t.Errorf("status %s:\n%s", res.Status, fe.logText())
	}
	if !slices.Contains(fe.secrets, "n0colon-secret") {
		t.Errorf("the malformed value is not masked")
	}
}
