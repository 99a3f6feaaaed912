package aptarchive

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// keyUID names the throwaway signing key; .invalid so it can never be
// mistaken for a real identity.
const keyUID = "buildd-agent test archive <archive@buildd-agent.invalid>"

// sign makes a throwaway ed25519 key in a private GNUPGHOME (about 50 ms,
// so there is nothing to gain from caching it), writes InRelease and
// Release.gpg next to release and keeps the exported public key.
func (a *Archive) sign(t testing.TB, release string) {
	t.Helper()
	// Not t.TempDir(): gpg-agent's socket lives in GNUPGHOME when there is
	// no /run/user/<uid>, and a unix socket path must stay under 108 bytes.
	home, err := os.MkdirTemp("", "aptarchive-gpg")
	if err != nil {
		t.Fatalf("cannot make a GNUPGHOME: %v", err)
	}
	env := []string{"GNUPGHOME=" + home}
	t.Cleanup(func() {
		// The agent outlives gpg; stop it before its home goes away.
		kill := exec.Command("gpgconf", "--kill", "all")
		kill.Env = append(os.Environ(), env...)
		_ = kill.Run()
		_ = os.RemoveAll(home)
	})
	gpg := func(args ...string) []byte {
		t.Helper()
		base := []string{"--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""}
		return run(t, "", env, "gpg", append(base, args...)...)
	}
	gpg("--quick-gen-key", keyUID, "ed25519", "sign", "never")
	a.Fingerprint = fingerprint(t, gpg("--with-colons", "--list-secret-keys"))
	a.publicKey = gpg("--export", a.Fingerprint)
	a.armored = gpg("--armor", "--export", a.Fingerprint)
	if len(a.publicKey) == 0 {
		t.Fatalf("gpg exported no public key for %s", a.Fingerprint)
	}
	dir := filepath.Dir(release)
	gpg("--local-user", a.Fingerprint, "--digest-algo", "SHA512", "--clearsign",
		"--output", filepath.Join(dir, "InRelease"), release)
	gpg("--local-user", a.Fingerprint, "--digest-algo", "SHA512", "--armor", "--detach-sign",
		"--output", filepath.Join(dir, "Release.gpg"), release)
	for _, f := range []string{"InRelease", "Release.gpg"} {
		if err := os.Chmod(filepath.Join(dir, f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(a.Dir, "archive-key.gpg"), a.publicKey, 0o644)
}

// fingerprint is the first "fpr" record of gpg --with-colons output.
func fingerprint(t testing.TB, colons []byte) string {
	t.Helper()
	for _, line := range bytes.Split(colons, []byte("\n")) {
		fields := strings.Split(string(line), ":")
		if len(fields) > 9 && fields[0] == "fpr" && fields[9] != "" {
			return fields[9]
		}
	}
	t.Fatalf("no fingerprint in gpg's key listing:\n%s", colons)
	return ""
}
