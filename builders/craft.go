package builders

// The craft manager (sourcecraft packages): launchpad-buildd's
// CraftBuildManager (lpbuildd/craft.py) and build-craft
// (lpbuildd/target/build_craft.py), declared on the craft flow
// (craft_tool.go). Its environment_variables carry registry credentials,
// which become Cargo's environment and Maven's settings.xml
// (craft_credentials.go); nothing else of them reaches the build. Every
// failure of the build operation is PACKAGEFAIL.

import "strings"

func init() { Register("craft", sourcecraftTool.factory) }

var sourcecraftTool = &craftTool{
	tag:                     "craft",
	tool:                    "sourcecraft",
	defaultChannel:          "latest/edge/craftctl",
	result:                  func(name string) bool { return strings.HasSuffix(name, ".tar.xz") },
	anyFailureIsPackageFail: true,
	launchpadEnv:            true,
	environmentVariables:    true,
}
