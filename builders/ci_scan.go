package builders

// Malware scanning of CI job outputs (scan_malware), as launchpad-buildd's
// target/run_ci.py does it: clamav installed with the other dependencies,
// freshclam pointed at [proxy] clamavdatabase and run once at prepare, and
// `clamscan --recursive` over each job's output directory.
//
// This file is the contract between the ci manager (ci.go) and the
// scanner; its bodies are being filled in.

import (
	"context"
	"errors"
)

// ciRunner runs argv in the build target with the build's environment and
// returns its exit status (err only when it could not be run).
type ciRunner func(ctx context.Context, argv []string, env []string) (int, error)

// ciScanPackages are the packages prepare adds when scan_malware is set.
func ciScanPackages() []string { return []string{"clamav"} }

// ciPrepareScanner configures and updates the scanner's database after the
// packages are installed. databaseURL is ManagerConfig.ClamAVDatabaseURL.
// writeFile appends data to a file in the target (as the reference opens
// /etc/clamav/freshclam.conf with mode "a").
func ciPrepareScanner(ctx context.Context, run ciRunner, appendFile func(ctx context.Context, path string, data []byte) error, databaseURL string) error {
	return errors.New("malware scanning is not implemented yet")
}

// ciScanOutput scans one job's output directory in the target. clean is
// false when something was detected (the job then fails); err when the
// scan could not be made.
func ciScanOutput(ctx context.Context, run ciRunner, outputDir string, env []string) (clean bool, err error) {
	return false, errors.New("malware scanning is not implemented yet")
}
