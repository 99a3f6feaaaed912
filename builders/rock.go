package builders

// The rock manager: launchpad-buildd's RockBuildManager (lpbuildd/rock.py)
// and build-rock (lpbuildd/target/build_rock.py), declared on the craft
// flow (craft_tool.go). Every failure of the build operation is
// PACKAGEFAIL, as the reference's buildFail for any non-zero exit.

import "strings"

func init() { Register("rock", rockTool.factory) }

var rockTool = &craftTool{
	tag:  "rock",
	tool: "rockcraft",
	// python3-pip and python3-setuptools as for charms; dirmngr for
	// repo-overlay's OpenPGP keyserver lookups.
	deps:                    []string{"python3-pip", "python3-setuptools", "dirmngr"},
	result:                  func(name string) bool { return strings.HasSuffix(name, ".rock") },
	anyFailureIsPackageFail: true,
	launchpadEnv:            true,
}
