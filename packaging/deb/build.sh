#!/bin/sh
# Build buildd-agent_<version>_<arch>.deb from a staged tree with dpkg-deb.
#   packaging/deb/build.sh BINARY VERSION ARCH OUTDIR
# Why dpkg-deb and not debhelper or nfpm: nfpm is not in Debian 12, and
# debhelper's dh-golang builds only from Debian's packaged Go libraries
# (the LXD client and most of go.mod are not packaged), so the binary would
# be built by `go build` anyway. The package is one binary, one unit, one
# conffile and three short maintainer scripts: dpkg-deb (in dpkg, on every
# Debian machine) builds it with no build dependencies, and lintian checks
# the result.
set -eu
bin=$1 version=$2 arch=$3 out=$4
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
doc=$stage/usr/share/doc/buildd-agent

install -D -m 0755 "$bin" "$stage/usr/bin/buildd-agent"
install -D -m 0644 "$top/etc/buildd-agent.service" "$stage/lib/systemd/system/buildd-agent.service"
install -D -m 0644 "$top/etc/buildd-agent.toml" "$stage/etc/buildd-agent/buildd-agent.toml"
install -D -m 0644 "$top/README.md" "$doc/README.md"
gzip -9n "$doc/README.md"
install -D -m 0644 "$here/copyright" "$doc/copyright"
# A native package's changelog: the version and the commit it was built from.
{
	echo "buildd-agent ($version) unstable; urgency=medium"
	echo
	echo "  * Built from $(git -C "$top" rev-parse HEAD 2>/dev/null || echo 'an unknown commit')."
	echo
	# The commit's date, so that the same commit gives the same package.
	date=$(git -C "$top" log -1 --format=%cD 2>/dev/null || date -R)
	echo " -- buildd-agent developers <buildd-agent@lists.example.org>  $date"
} > "$doc/changelog"
gzip -9n "$doc/changelog"

mkdir -p "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
	"$here/control.in" > "$stage/DEBIAN/control"
install -m 0644 "$here/conffiles" "$stage/DEBIAN/conffiles"
for s in postinst prerm postrm; do
	install -m 0755 "$here/$s" "$stage/DEBIAN/$s"
done
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/buildd-agent_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
echo "$deb"
