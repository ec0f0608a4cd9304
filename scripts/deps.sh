#!/usr/bin/env bash
# Installs the Debian packages the tests need when they are missing. The tests start
# their own servers on free loopback ports; this script starts none, and never touches
# the services' default instances.
set -euo pipefail

need=()
for pkg in $*; do
	dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "== installing ${need[*]}"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
