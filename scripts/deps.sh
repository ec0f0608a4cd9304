#!/usr/bin/env bash
# Installs the Debian packages the tests need when they are missing: with no arguments,
# the servers internal/svctest starts (redis-server with redis-cli, memcached,
# mariadb-server with mariadb-install-db, postgresql with initdb), the AWS CLI the
# user-data and release tests drive (awscli, as /usr/bin/aws), the busybox the image's
# health check is run by (busybox-static), nginx (nginx -t of deploy/nginx.conf, and the
# fleet behind it), curl (the user data asks the instance metadata with it), chromium
# (the gameday board's page test), shellcheck, and e2fsprogs (chattr: the chaos test
# makes the file backend's directory read-only, for root too); with arguments, those packages instead.
#
# The tests start their own servers on free loopback ports, so this script starts none.
# Installing a server package may start its default instance on the default port; the
# script stops the instances of the packages it installed itself, and never touches a
# service it did not install. With everything present it only asks dpkg-query and exits.
set -euo pipefail

# dynalite (npm package, version 4), the DynamoDB the tests run, goes with the default
# set into the project's git-ignored .deps folder (Node.js and npm first, from Debian,
# when missing). With it present nothing is asked of npm.
if [ $# -eq 0 ]; then
	deps="$(cd "$(dirname "$0")/.." && pwd)/.deps"
	if ! grep -qs '"version": "4\.' "$deps/node_modules/dynalite/package.json"; then
		command -v npm >/dev/null 2>&1 || bash "$0" nodejs npm
		echo "== installing dynalite@4 into $deps"
		npm install --prefix "$deps" --no-audit --no-fund --loglevel=error dynalite@4
	fi
fi

if [ $# -eq 0 ]; then
	set -- redis-server redis-tools memcached mariadb-server mariadb-client postgresql awscli busybox-static nginx curl chromium shellcheck e2fsprogs
fi

# A package that was removed but not purged is still known to dpkg (status "rc"), so
# only the status "installed" counts.
need=()
for pkg in "$@"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
	[ "$status" = installed ] || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
apt() { $sudo env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }
echo "== installing ${need[*]}"
apt update -qq
apt install -y -qq --no-install-recommends "${need[@]}"

# The service each server package registers; clients and tools have none.
for pkg in "${need[@]}"; do
	case "$pkg" in
	redis-server) svc=redis-server ;;
	memcached) svc=memcached ;;
	mariadb-server) svc=mariadb ;;
	postgresql) svc=postgresql ;;
	nginx) svc=nginx ;;
	*) continue ;;
	esac
	# Without an init system (a container) there is nothing to stop, and that is fine.
	$sudo service "$svc" stop >/dev/null 2>&1 || true
done
