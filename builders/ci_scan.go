package builders

// Malware scanning of CI job outputs (scan_malware), as launchpad-buildd's
// target/run_ci.py does it: clamav installed with the other dependencies,
// freshclam pointed at [proxy] clamavdatabase and run once at prepare, and
// `clamscan --recursive` over each job's output directory, as the buildd
// user, after the job.
//
// This file is the contract between the ci manager (ci.go) and the
// scanner.

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"unicode"
)

// ciRunner runs argv in the build target with the build's environment and
// returns its exit status (err only when it could not be run). env is added
// to the build's environment (nil: the build's environment alone). The
// manager gives ciPrepareScanner a runner that runs as root (freshclam is
// run-ci-prepare's backend.run) and ciScanOutput the one its jobs run with,
// as buildd (run_ci.py's run_build_command: runuser -u buildd -g buildd
// -G lxd --).
type ciRunner func(ctx context.Context, argv []string, env []string) (int, error)

// freshclamConf is where the reference points freshclam at the mirror.
const freshclamConf = "/etc/clamav/freshclam.conf"

// ciScanPackages are the packages prepare adds when scan_malware is set.
func ciScanPackages() []string { return []string{"clamav"} }

// ciPrepareScanner configures and updates the scanner's database after the
// packages are installed. databaseURL is ManagerConfig.ClamAVDatabaseURL:
// when set, "PrivateMirror <url>" is appended to freshclam.conf (appendFile
// appends data to a file in the target, as the reference opens
// /etc/clamav/freshclam.conf with mode "a"). Then `freshclam --quiet` runs
// as root with the build's environment (its proxy, as the reference passes
// build_proxy_environment); a non-zero exit is an error, which the manager
// reports as the reference's install failure (prepare's exit 200: "Preparation
// failed." and PACKAGEFAIL).
//
// The reference counts on the container running no services, so that no
// freshclam daemon races this run. Debian's invoke-rc.d and
// deb-systemd-invoke read only /usr/sbin/policy-rc.d, not the
// /usr/local/sbin one the LXD target writes (as lxd.py does), so on a
// chroot without its own, clamav-freshclam's postinst starts the daemon,
// which holds freshclam.log's lock: `freshclam --quiet` then exits 2
// ("Failed to lock the log file"). A daemon the install started is stopped
// first (stopFreshclamDaemon; nothing happens when none runs).
func ciPrepareScanner(ctx context.Context, run ciRunner, appendFile func(ctx context.Context, path string, data []byte) error, databaseURL string) error {
	if databaseURL != "" {
		line, err := privateMirrorLine(databaseURL)
		if err != nil {
			return err
		}
		if err := appendFile(ctx, freshclamConf, []byte(line)); err != nil {
			return fmt.Errorf("cannot configure the ClamAV database mirror in %s: %w", freshclamConf, err)
		}
	}
	if _, err := run(ctx, []string{"sh", "-c", stopFreshclamDaemon}, nil); err != nil {
		return fmt.Errorf("cannot stop the freshclam daemon: %w", err)
	}
	code, err := run(ctx, []string{"freshclam", "--quiet"}, nil)
	if err != nil {
		return fmt.Errorf("cannot download the malware definitions (freshclam): %w", err)
	}
	if code != 0 {
		return fmt.Errorf("cannot download the malware definitions: freshclam exited %d", code)
	}
	return nil
}

// stopFreshclamDaemon stops clamav-freshclam's daemon if its package
// started one (systemd's unit, else the init script); it always exits 0.
const stopFreshclamDaemon = `if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  systemctl stop clamav-freshclam.service 2>/dev/null
elif [ -x /etc/init.d/clamav-freshclam ]; then
  /etc/init.d/clamav-freshclam stop >/dev/null 2>&1
fi
exit 0`

// privateMirrorLine is freshclam.conf's line for the mirror. The URL comes
// from the operator's configuration, but it is checked all the same: a
// newline or space in it would add or break freshclam directives.
func privateMirrorLine(databaseURL string) (string, error) {
	if strings.IndexFunc(databaseURL, unicode.IsSpace) >= 0 || strings.ContainsRune(databaseURL, 0) {
		return "", fmt.Errorf("invalid ClamAV database URL %q: it contains white space", databaseURL)
	}
	u, err := url.Parse(databaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("invalid ClamAV database URL %q: not an http:// or https:// URL", databaseURL)
	}
	return "PrivateMirror " + databaseURL + "\n", nil
}

// ciScanOutput scans one job's output directory in the target (the
// reference's job_output_path, /build/output/<job>/<index>, its log
// included) with `clamscan --recursive <dir>` through run (as buildd, see
// ciRunner) with env (the build's proxy environment). clean is true only when clamscan exits 0. The reference
// fails the job on any non-zero exit, so the manager fails the job whenever
// clean is false: exit 1 (something was detected) gives clean false and no
// error; any other exit, or a scan that could not be run, gives clean false
// and an error saying why, for the log.
func ciScanOutput(ctx context.Context, run ciRunner, outputDir string, env []string) (clean bool, err error) {
	if !path.IsAbs(outputDir) || path.Clean(outputDir) != outputDir || strings.ContainsRune(outputDir, 0) {
		return false, fmt.Errorf("cannot scan %q: not a clean absolute path", outputDir)
	}
	code, err := run(ctx, []string{"clamscan", "--recursive", outputDir}, env)
	switch {
	case err != nil:
		return false, fmt.Errorf("cannot scan %s for malware: %w", outputDir, err)
	case code == 0:
		return true, nil
	case code == 1:
		// clamscan: "1 : Virus(es) found."
		return false, nil
	}
	return false, fmt.Errorf("cannot scan %s for malware: %w", outputDir, clamscanError(code))
}

// errClamscan is a clamscan exit other than 0 (clean) and 1 (found).
var errClamscan = errors.New("clamscan failed")

func clamscanError(code int) error {
	return fmt.Errorf("%w: exit status %d", errClamscan, code)
}
