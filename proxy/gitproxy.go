package proxy

import _ "embed"

// GitProxyPath is where GitProxyScript is installed in the target, and what
// GIT_PROXY_COMMAND names.
const GitProxyPath = "/usr/local/bin/lpbuildd-git-proxy"

// GitProxyScript is a POSIX shell script (install it 0755 at GitProxyPath)
// that tunnels git:// connections through $http_proxy with socat, which the
// build image has (the reference installs python3 and socat for this; the
// script needs only /bin/sh and socat).
//
//go:embed lpbuildd-git-proxy
var GitProxyScript []byte
