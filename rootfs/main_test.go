package rootfs

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
)

// capEffEnv makes the test binary a helper (buildkite's TEST_MAIN style):
// it prints the CapEff line of /proc/self/status and exits, so that a test
// can exec a copy of it carrying file capabilities and see what the kernel
// granted.
const capEffEnv = "ROOTFS_TEST_PRINT_CAPEFF"

func TestMain(m *testing.M) {
	if os.Getenv(capEffEnv) == "1" {
		fmt.Println(capEff())
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func capEff() string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "error: " + err.Error()
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "error: no CapEff"
}
