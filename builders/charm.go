package builders

// The charm manager: launchpad-buildd's CharmBuildManager (lpbuildd/charm.py)
// and build-charm (lpbuildd/target/build_charm.py), declared on the craft
// flow (craft_tool.go). charmcraft's exits 200/201 (install, build) are
// PACKAGEFAIL; anything else, here a command that cannot be run at all or
// an agent-side failure, is BUILDERFAIL.

import "strings"

func init() { Register("charm", charmTool.factory) }

var charmTool = &craftTool{
	tag:  "charm",
	tool: "charmcraft",
	// See charmcraft.provider.CharmcraftBuilddBaseConfiguration.setup.
	deps: []string{"python3-pip", "python3-setuptools"},
	result: func(name string) bool {
		return strings.HasSuffix(name, ".charm") || strings.HasSuffix(name, ".manifest")
	},
	craftPlatform: true,
}
