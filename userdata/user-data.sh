#!/bin/bash
# EC2 user data for calcserver (Amazon Linux 2023, Ubuntu): downloads the release that
# `make release` uploaded (s3://CALC_BUCKET/CALC_PREFIX/{calcserver,calcserver.sha256,
# server.ini}), refuses it unless the checksum matches and `calcserver -check` accepts the
# configuration, installs it under CALC_ROOT and runs it: as a hardened systemd service,
# or, without systemd (a container, a test machine), in the background with a pid file.
# Running it again installs the release again and leaves exactly one server running.
# See README.md, "Deploy on EC2".
#
# Settings: edit the defaults below, or set the variables in the environment (for EC2 user
# data, add `export CALC_BUCKET=...` lines right after the first line).
set -euo pipefail

CALC_BUCKET=${CALC_BUCKET:-}                          # bucket of the release (required)
CALC_PREFIX=${CALC_PREFIX-calcserver}                 # key prefix; empty: the bucket's top level
CALC_ROOT=${CALC_ROOT:-/}                             # install prefix
CALC_INIT=${CALC_INIT:-auto}                          # auto, systemd or none
CALC_AWS=${CALC_AWS:-aws}                             # the AWS CLI command
CALC_SHUTDOWN_ON_EXIT=${CALC_SHUTDOWN_ON_EXIT:-0}     # 1: power off when the server dies
CALC_USER=${CALC_USER:-calcserver}                    # service user (systemd only)
CALC_PORT=${CALC_PORT:-}                              # listen port; empty: Port of server.ini
CALC_HEALTH_TIMEOUT=${CALC_HEALTH_TIMEOUT:-60}        # seconds to wait for /healthcheck; 0: don't
CALC_SYSTEMD_DIR=${CALC_SYSTEMD_DIR:-/run/systemd/system} # CALC_INIT=auto: systemd if it exists
CALC_SYSTEMCTL=${CALC_SYSTEMCTL:-systemctl}           # the systemctl command

log() { printf 'calcserver-user-data: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# --- checks of the settings -------------------------------------------------------------

[ -n "$CALC_BUCKET" ] || die "CALC_BUCKET is not set: set it to the bucket \`make release BUCKET=...\` uploaded to"
CALC_BUCKET=${CALC_BUCKET#s3://}
CALC_BUCKET=${CALC_BUCKET%/}
while [[ $CALC_PREFIX == /* ]]; do CALC_PREFIX=${CALC_PREFIX#/}; done
while [[ $CALC_PREFIX == */ ]]; do CALC_PREFIX=${CALC_PREFIX%/}; done
url="s3://$CALC_BUCKET${CALC_PREFIX:+/$CALC_PREFIX}"

[[ $CALC_ROOT == /* ]] || die "CALC_ROOT must be an absolute path, not \"$CALC_ROOT\""
case $CALC_SHUTDOWN_ON_EXIT in
1 | true | yes) shutdown_on_exit=1 ;;
0 | false | no | '') shutdown_on_exit=0 ;;
*) die "CALC_SHUTDOWN_ON_EXIT must be 1 or 0, not \"$CALC_SHUTDOWN_ON_EXIT\"" ;;
esac
[ -z "$CALC_PORT" ] || { [[ $CALC_PORT =~ ^[0-9]{1,5}$ ]] && ((10#$CALC_PORT <= 65535)); } ||
	die "CALC_PORT must be a port number, not \"$CALC_PORT\""
[[ $CALC_HEALTH_TIMEOUT =~ ^[0-9]+$ ]] || die "CALC_HEALTH_TIMEOUT must be a number of seconds, not \"$CALC_HEALTH_TIMEOUT\""
case $CALC_INIT in
auto) if [ -d "$CALC_SYSTEMD_DIR" ]; then init=systemd; else init=none; fi ;;
systemd | none) init=$CALC_INIT ;;
*) die "CALC_INIT must be auto, systemd or none, not \"$CALC_INIT\"" ;;
esac
read -r -a aws <<<"$CALC_AWS"
read -r -a systemctl <<<"$CALC_SYSTEMCTL"
[ ${#aws[@]} -gt 0 ] || die "CALC_AWS is empty"
[ ${#systemctl[@]} -gt 0 ] || die "CALC_SYSTEMCTL is empty"

# Where everything goes. $r is CALC_ROOT without its trailing slash ("" for /).
root=$(realpath -m -- "$CALC_ROOT")
r=${root%/}
bindir=$r/opt/calcserver
bin=$bindir/calcserver
confdir=$r/etc/calcserver
conf=$confdir/server.ini
workdir=$r/var/log/calcserver # the server's working directory: a relative LogLocation starts here
console=$workdir/console.log  # without systemd: the server's stdout and stderr
rundir=$r/run
pidfile=$rundir/calcserver.pid
watchfile=$rundir/calcserver-watch.pid
unit=$r/etc/systemd/system/calcserver.service
rotate=$r/etc/logrotate.d/calcserver

log "release $url, install root $root, init $init"

# --- helpers ----------------------------------------------------------------------------

# ini_get FILE KEY prints the value of KEY in the flat server.ini FILE the way calcserver
# reads it: keys matched without regard to case, keys and values bare or quoted ("", '' or
# ``; keys "" or ``), '#' and ';' comment lines, a comment after a bare value only after a
# space, CRLF and a UTF-8 BOM tolerated. The last occurrence wins; nothing for a missing key.
ini_get() {
	local LC_ALL=C
	local want=${2,,} line key rest value q
	while IFS= read -r line || [ -n "$line" ]; do
		line=${line%$'\r'}
		line=${line#$'\xef\xbb\xbf'}
		line=${line#"${line%%[![:space:]]*}"}
		case $line in
		'' | '#'* | ';'* | '['*) continue ;;
		'"'* | '`'*)
			q=${line:0:1}
			rest=${line:1}
			[[ $rest == *"$q"* ]] || continue
			key=${rest%%"$q"*}
			rest=${rest#*"$q"}
			rest=${rest#"${rest%%[![:space:]]*}"}
			[[ $rest == =* ]] || continue
			rest=${rest#=}
			;;
		*=*)
			key=${line%%=*}
			rest=${line#*=}
			;;
		*) continue ;;
		esac
		key=${key#"${key%%[![:space:]]*}"}
		key=${key%"${key##*[![:space:]]}"}
		[ "${key,,}" = "$want" ] || continue
		value=${rest#"${rest%%[![:space:]]*}"}
		value=${value%"${value##*[![:space:]]}"}
		case $value in
		'"'* | "'"* | '`'*)
			q=${value:0:1}
			value=${value:1}
			value=${value%%"$q"*}
			;;
		*)
			value=${value%%' #'*}
			value=${value%%' ;'*}
			value=${value%"${value##*[![:space:]]}"}
			;;
		esac
		printf '%s\n' "$value"
	done <"$1" | tail -n 1
}

# duration_ns D prints the Go duration D (30s, 1m30s, 500ms, 1.5h, 0) in nanoseconds.
duration_ns() {
	local LC_ALL=C
	local d=${1#+} total=0 int frac unit scale n
	[ "$d" = 0 ] && {
		echo 0
		return
	}
	[ -n "$d" ] || return 1
	while [ -n "$d" ]; do
		[[ $d =~ ^([0-9]*)(\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h) ]] || return 1
		int=${BASH_REMATCH[1]} frac=${BASH_REMATCH[3]} unit=${BASH_REMATCH[4]}
		[ -n "$int$frac" ] || return 1
		d=${d:${#BASH_REMATCH[0]}}
		case $unit in
		ns) scale=1 ;;
		ms) scale=1000000 ;;
		s) scale=1000000000 ;;
		m) scale=60000000000 ;;
		h) scale=3600000000000 ;;
		*) scale=1000 ;;
		esac
		frac=${frac:0:9}
		n=$((10 ** ${#frac}))
		total=$((total + 10#${int:-0} * scale))
		if ((scale % n == 0)); then
			total=$((total + 10#${frac:-0} * (scale / n)))
		else
			total=$((total + 10#${frac:-0} * scale / n))
		fi
	done
	echo "$total"
}

# alive PID: the process exists and is not a zombie.
alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[ "${stat%% *}" != Z ]
}

# wait_gone PID SECONDS: wait until PID is gone; false if it is still alive after SECONDS.
wait_gone() {
	local deadline=$((SECONDS + $2))
	while alive "$1"; do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}

# read_pid FILE prints the pid in FILE, if it holds one.
read_pid() {
	local pid
	[ -f "$1" ] || return 1
	read -r pid <"$1" || true
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	echo "$pid"
}

# is_server PID: PID runs the installed binary (or the one it replaced).
is_server() {
	local exe
	exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
	[ "$exe" = "$bin" ] || [ "$exe" = "$bin (deleted)" ]
}

# is_watcher PID: PID is the CALC_SHUTDOWN_ON_EXIT watcher a previous run started.
is_watcher() {
	local cmdline
	cmdline=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
	[[ $cmdline == *" calcserver-watch "* ]]
}

# stop_previous stops a server (and its watcher) that an earlier run started without
# systemd, after checking that the pid file names our calcserver.
stop_previous() {
	local pid
	if pid=$(read_pid "$watchfile") && is_watcher "$pid"; then
		log "stopping the shutdown watcher of the previous server (pid $pid)"
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		wait_gone "$pid" 5 || kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f -- "$watchfile"
	if pid=$(read_pid "$pidfile"); then
		if is_server "$pid"; then
			log "stopping the previous calcserver (pid $pid; up to ${stop_sec}s)"
			kill -TERM "$pid" 2>/dev/null || true
			if ! wait_gone "$pid" "$stop_sec"; then
				log "calcserver (pid $pid) still runs after ${stop_sec}s: killing it"
				kill -KILL "$pid" 2>/dev/null || true
				wait_gone "$pid" 5 || die "calcserver (pid $pid) survived SIGKILL"
			fi
		elif alive "$pid"; then
			log "$pidfile names pid $pid, which is not $bin: left alone"
		fi
		rm -f -- "$pidfile"
	fi
}

# healthy: /healthcheck answers 200 and names the version just installed (so a server of
# someone else on the port does not count).
healthy() {
	(
		exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
		printf 'GET /healthcheck HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
		response=
		while IFS= read -r -t 2 line <&3 || [ -n "$line" ]; do response+=$line$'\n'; done
		[[ $response == "HTTP/1."[01]" 200 "* && $response == *"\"version\":\"$version\""* ]]
	) 2>/dev/null
}

# unit_path_ok PATH: PATH can be written into a unit file as it is.
unit_path_ok() { [[ $1 =~ ^/[A-Za-z0-9._/@+:,=~-]*$ ]]; }

# write_file PATH MODE: writes stdin to PATH atomically.
write_file() {
	mkdir -p -- "$(dirname -- "$1")"
	cat >"$1.tmp.$$"
	chmod "$2" -- "$1.tmp.$$"
	mv -f -- "$1.tmp.$$" "$1"
}

# owned_dir DIR: create DIR for the server's user if missing; a directory that exists and
# is owned by someone else is left as it is (never chown /var/log, say).
owned_dir() {
	if [ ! -d "$1" ]; then
		mkdir -p -- "$1"
		chown "$user:$group" -- "$1"
		chmod 0750 -- "$1"
		log "created $1 (owner $user)"
	elif [ "$(stat -c %U -- "$1")" != "$user" ]; then
		log "$1 exists and is owned by $(stat -c %U -- "$1"): left as it is"
	fi
}

# ensure_aws installs the AWS CLI when the default command is missing (Ubuntu's AMIs come
# without one; Amazon Linux has it).
ensure_aws() {
	command -v "${aws[0]}" >/dev/null 2>&1 && return
	[ "$CALC_AWS" = aws ] || die "the AWS CLI \"$CALC_AWS\" (CALC_AWS) is not installed"
	log "the AWS CLI is not installed: installing it"
	if command -v snap >/dev/null 2>&1 && snap install aws-cli --classic >&2; then
		aws[0]=/snap/bin/aws
	elif command -v dnf >/dev/null 2>&1 && dnf install -y -q awscli-2 >&2; then
		:
	elif command -v apt-get >/dev/null 2>&1 && apt-get update -q >&2 &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q awscli >&2; then
		:
	else
		die "could not install the AWS CLI: install it, or name it in CALC_AWS"
	fi
}

# imds_region prints the instance's region from the instance metadata service (IMDSv2).
imds_region() {
	local base=${AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254} token
	base=${base%/}
	token=$(curl -fsS --connect-timeout 2 --max-time 5 --retry 1 -X PUT \
		-H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "$base/latest/api/token") || return 1
	curl -fsS --connect-timeout 2 --max-time 5 --retry 1 \
		-H "X-aws-ec2-metadata-token: $token" "$base/latest/meta-data/placement/region"
}

# --- download and verify ----------------------------------------------------------------

ensure_aws
# Debian's and Ubuntu's AWS CLI v2 builds ignore AWS_ENDPOINT_URL*: pass it ourselves.
endpoint=${AWS_ENDPOINT_URL_S3:-${AWS_ENDPOINT_URL:-}}
if [ -n "$endpoint" ]; then
	aws+=(--endpoint-url "$endpoint")
	log "S3 endpoint $endpoint"
fi
region=${AWS_REGION:-${AWS_DEFAULT_REGION:-}}
if [ -z "$region" ]; then
	case ${AWS_EC2_METADATA_DISABLED:-} in
	true | TRUE | True) log "no AWS_REGION and the metadata service is disabled: the AWS CLI picks the region" ;;
	*)
		if region=$(imds_region) && [[ $region =~ ^[a-z0-9-]+$ ]]; then
			log "region $region (instance metadata)"
		else
			region=
			log "warning: no region from the instance metadata service: the AWS CLI picks it"
		fi
		;;
	esac
fi
[ -z "$region" ] || aws+=(--region "$region")

# One run at a time (fd 9 holds the lock; nothing started here may inherit it).
mkdir -p -- "$rundir" "$bindir"
exec 9>"$rundir/calcserver-user-data.lock"
flock -w 600 9 || die "another run still holds $rundir/calcserver-user-data.lock"

# The staging directory sits next to the binary, so installing is a rename.
stage=$(mktemp -d "$bindir/.staging.XXXXXX")
trap 'rm -rf -- "$stage"' EXIT
files=(calcserver calcserver.sha256 server.ini)
declare -A jobs
for f in "${files[@]}"; do
	"${aws[@]}" s3 cp --only-show-errors "$url/$f" "$stage/$f" >"$stage/$f.err" 2>&1 9>&- &
	jobs[$f]=$!
done
failed=0
for f in "${files[@]}"; do
	if wait "${jobs[$f]}" && [ -f "$stage/$f" ]; then
		log "downloaded $url/$f"
	else
		log "error: cannot download $url/$f: $(tr '\n' ' ' <"$stage/$f.err")"
		failed=1
	fi
done
[ "$failed" = 0 ] || die "download from $url failed: nothing installed"

read -r want name <"$stage/calcserver.sha256" || true
[[ ${want:-} =~ ^[0-9a-fA-F]{64}$ && ${name:-} =~ ^\*?calcserver$ ]] ||
	die "$url/calcserver.sha256 is not a sha256sum line for calcserver (\"<sha256>  calcserver\"): nothing installed"
got=$(sha256sum <"$stage/calcserver")
got=${got%% *}
[ "${want,,}" = "$got" ] ||
	die "checksum mismatch: $url/calcserver has SHA-256 $got but $url/calcserver.sha256 says $want: nothing installed"
log "checksum ok ($got)"
chmod 0755 -- "$stage/calcserver"
version=$("$stage/calcserver" -version) || die "$url/calcserver does not run on this machine ($(uname -m)): nothing installed"
version=${version#calcserver }
log "calcserver $version"

# --- what the configuration asks for ----------------------------------------------------

ini=$stage/server.ini
port=${CALC_PORT:-$(ini_get "$ini" Port)}
port=${port:-80}
delay=$(ini_get "$ini" ShutdownDelay)
timeout=$(ini_get "$ini" ShutdownTimeout)
# A value this cannot read is reported after calcserver -check has had its say on the file.
delay_ns=$(duration_ns "${delay:-0s}") || delay_ns=
timeout_ns=$(duration_ns "${timeout:-30s}") || timeout_ns=

# The log file the server will open: LogLocation is a directory (calcserver.log inside)
# when it ends in / or is one, else a file; a relative one starts in the working directory.
logloc=$(ini_get "$ini" LogLocation)
logdir='' logfile=''
if [ -n "$logloc" ]; then
	[[ $logloc == /* ]] || logloc=$workdir/$logloc
	if [[ $logloc == */ ]] || [ -d "$logloc" ]; then
		logdir=$(realpath -m -- "$logloc")
		logfile=$logdir/calcserver.log
	else
		logfile=$(realpath -m -- "$logloc")
		logdir=$(dirname -- "$logfile")
	fi
fi
fspath=$(ini_get "$ini" FsPath)
if [ -n "$fspath" ]; then
	[[ $fspath == /* ]] || fspath=$workdir/$fspath
	fspath=$(realpath -m -- "$fspath")
fi

if [ "$init" = systemd ]; then
	user=$CALC_USER
	if ! id -u "$user" >/dev/null 2>&1; then
		nologin=$(command -v nologin || echo /usr/sbin/nologin)
		useradd --system --user-group --no-create-home --home-dir /nonexistent --shell "$nologin" "$user"
		log "created the system user $user"
	fi
	for p in "$bin" "$conf" "$workdir" ${logdir:+"$logdir"} ${fspath:+"$fspath"}; do
		unit_path_ok "$p" || die "\"$p\" cannot go into a systemd unit as it is: use a path of letters, digits and ._/@+:,=~-"
	done
else
	user=$(id -un)
fi
group=$(id -gn "$user")

owned_dir "$workdir"
if [ -n "$logdir" ]; then
	owned_dir "$logdir"
	# Made here, so neither the check below nor logrotate leaves it to another owner.
	[ -e "$logfile" ] || : >"$logfile"
	chown "$user:$group" -- "$logfile"
	chmod 0640 -- "$logfile"
	log "log file $logfile"
else
	log "LogLocation is empty: the server logs to stderr (with systemd the journal, else $console)"
fi
[ -z "$fspath" ] || owned_dir "$fspath"

port_flag=()
[ -z "$CALC_PORT" ] || port_flag=(-port "$CALC_PORT")
if ! out=$(cd "$workdir" && "$stage/calcserver" -check -config "$ini" "${port_flag[@]}" 2>&1 >/dev/null); then
	die "$url/server.ini is not valid, nothing installed: ${out//"$ini"/$url/server.ini}"
fi
log "configuration ok (calcserver -check)"
[ -n "$delay_ns" ] || die "$url/server.ini: cannot read ShutdownDelay \"$delay\" as a duration"
[ -n "$timeout_ns" ] || die "$url/server.ini: cannot read ShutdownTimeout \"$timeout\" as a duration"
# Room for ShutdownDelay + ShutdownTimeout, rounded up, plus a margin for the final flush.
stop_sec=$(((delay_ns + timeout_ns + 999999999) / 1000000000 + 10))
# The server running now drains by the configuration it started with: a release that
# shortens the drain must not cut the old server's short.
if [ -f "$conf" ]; then
	old_delay_ns=$(duration_ns "$(ini_get "$conf" ShutdownDelay)" 2>/dev/null || duration_ns 0s)
	old_timeout_ns=$(duration_ns "$(ini_get "$conf" ShutdownTimeout)" 2>/dev/null || duration_ns 30s)
	old_stop_sec=$(((old_delay_ns + old_timeout_ns + 999999999) / 1000000000 + 10))
	if ((old_stop_sec > stop_sec)); then
		log "the running server's configuration drains longer: stopping it may take ${old_stop_sec}s"
		stop_sec=$old_stop_sec
	fi
fi

# --- install ----------------------------------------------------------------------------

mkdir -p -- "$confdir"
chgrp "$group" -- "$ini"
chmod 0640 -- "$ini"
mv -f -- "$ini" "$conf"
mv -f -- "$stage/calcserver" "$bin"
log "installed $bin and $conf"
stop_previous

# logrotate_conf prints the logrotate snippet: the log file is renamed and SIGHUP makes the
# server reopen it; without systemd the console file is copied and truncated.
logrotate_conf() {
	local reopen
	if [ "$init" = systemd ]; then
		reopen="systemctl kill -s HUP calcserver.service >/dev/null 2>&1 || true"
	else
		reopen="pid=\$(cat '$pidfile' 2>/dev/null) && [ \"\$(readlink /proc/\$pid/exe)\" = '$bin' ] && kill -HUP \"\$pid\" || true"
	fi
	echo "# calcserver's logs; written by its user data (userdata/user-data.sh)."
	if [ -n "$logfile" ]; then
		cat <<-EOF
			"$logfile" {
			    daily
			    maxsize 100M
			    rotate 7
			    missingok
			    notifempty
			    compress
			    delaycompress
			    create 0640 $user $group
			    sharedscripts
			    postrotate
			        $reopen
			    endscript
			}
		EOF
	fi
	if [ "$init" = none ]; then
		cat <<-EOF
			"$console" {
			    daily
			    maxsize 100M
			    rotate 7
			    missingok
			    notifempty
			    compress
			    copytruncate
			}
		EOF
	fi
}
logrotate_conf | write_file "$rotate" 0644
log "wrote $rotate"

# --- run with systemd -------------------------------------------------------------------

# unit_conf prints calcserver.service.
unit_conf() {
	local exec_start="$bin -config $conf${CALC_PORT:+ -port $CALC_PORT}"
	local rw="$workdir"
	[ -z "$logdir" ] || [ "$logdir" = "$workdir" ] || rw+=" $logdir"
	[ -z "$fspath" ] || rw+=" $fspath"
	cat <<-EOF
		# calcserver; written by its user data (userdata/user-data.sh), which rewrites it.
		[Unit]
		Description=calcserver, the unicorn calc server
		Wants=network-online.target
		After=network-online.target remote-fs.target
	EOF
	if [ "$shutdown_on_exit" = 1 ]; then
		cat <<-EOF
			# CALC_SHUTDOWN_ON_EXIT=1: no restart; when the server fails, the instance powers
			# off and its Auto Scaling group replaces it.
			FailureAction=poweroff
		EOF
	else
		echo "StartLimitIntervalSec=0"
	fi
	cat <<-EOF

		[Service]
		Type=exec
		User=$user
		Group=$group
		WorkingDirectory=$workdir
		ExecStart=$exec_start
		ExecReload=/bin/kill -HUP \$MAINPID
	EOF
	if [ "$shutdown_on_exit" = 1 ]; then
		echo "Restart=no"
	else
		printf 'Restart=always\nRestartSec=2\n'
	fi
	cat <<-EOF
		# ShutdownDelay ${delay:-0s} + ShutdownTimeout ${timeout:-30s}, rounded up, + 10 s (or the
		# longer drain of the configuration this one replaced).
		TimeoutStopSec=$stop_sec
		# A user that is not root may listen on port 80; nothing more.
		AmbientCapabilities=CAP_NET_BIND_SERVICE
		CapabilityBoundingSet=CAP_NET_BIND_SERVICE
		NoNewPrivileges=yes
		ProtectSystem=strict
		ProtectHome=yes
		PrivateTmp=yes
		PrivateDevices=yes
		ProtectKernelTunables=yes
		ProtectKernelModules=yes
		ProtectControlGroups=yes
		RestrictSUIDSGID=yes
		LockPersonality=yes
		# The log directory and FsPath (from server.ini) are the only places it writes.
		ReadWritePaths=$rw
		LimitNOFILE=65536

		[Install]
		WantedBy=multi-user.target
	EOF
}

if [ "$init" = systemd ]; then
	unit_conf | write_file "$unit" 0644
	log "wrote $unit"
	log "$CALC_SYSTEMCTL daemon-reload"
	"${systemctl[@]}" daemon-reload
	if [ -z "$r" ]; then
		log "$CALC_SYSTEMCTL enable calcserver.service"
		"${systemctl[@]}" enable calcserver.service
	else
		log "$CALC_SYSTEMCTL enable $unit (linked: CALC_ROOT is not /)"
		"${systemctl[@]}" enable "$unit"
		"${systemctl[@]}" daemon-reload
	fi
	log "$CALC_SYSTEMCTL restart calcserver.service"
	"${systemctl[@]}" restart calcserver.service
	if [ "$CALC_HEALTH_TIMEOUT" = 0 ] || [ "$port" = 0 ]; then
		log "started calcserver.service (not waiting for /healthcheck)"
		exit 0
	fi
	deadline=$((SECONDS + CALC_HEALTH_TIMEOUT))
	until healthy; do
		if ((SECONDS >= deadline)) || "${systemctl[@]}" is-failed --quiet calcserver.service; then
			"${systemctl[@]}" --no-pager status calcserver.service >&2 || true
			journalctl --no-pager -n 30 -u calcserver.service >&2 || true
			die "calcserver.service did not answer http://127.0.0.1:$port/healthcheck within ${CALC_HEALTH_TIMEOUT}s"
		fi
		sleep 0.2
	done
	log "calcserver.service is up: http://127.0.0.1:$port/healthcheck answers"
	exit 0
fi

# --- run without systemd ----------------------------------------------------------------

(cd "$workdir" && exec setsid "$bin" -config "$conf" "${port_flag[@]}" >>"$console" 2>&1 </dev/null 9>&-) &
pid=$!
echo "$pid" | write_file "$pidfile" 0644
log "started calcserver (pid $pid, pid file $pidfile, output $console)"

if [ "$shutdown_on_exit" = 1 ]; then
	# Polls rather than waits: the server is not its child.
	# shellcheck disable=SC2016 # the script is for the watcher's shell
	setsid bash -c '
		while stat=$(cat "/proc/$1/stat" 2>/dev/null) && stat=${stat##*) } && [ "${stat%% *}" != Z ]; do
			sleep 1
		done
		echo "calcserver-user-data: calcserver (pid $1) exited: shutdown -h now (CALC_SHUTDOWN_ON_EXIT=1)"
		shutdown -h now
	' calcserver-watch "$pid" >>"$console" 2>&1 </dev/null 9>&- &
	echo "$!" | write_file "$watchfile" 0644
	log "CALC_SHUTDOWN_ON_EXIT=1: the machine shuts down when calcserver exits (watcher pid $!)"
fi

if [ "$CALC_HEALTH_TIMEOUT" = 0 ] || [ "$port" = 0 ]; then
	sleep 1
	alive "$pid" || die "calcserver (pid $pid) exited at once; its output: $(tail -n 30 -- "$console")"
	log "calcserver (pid $pid) runs (not waiting for /healthcheck: CALC_HEALTH_TIMEOUT=0 or Port 0)"
	exit 0
fi
deadline=$((SECONDS + CALC_HEALTH_TIMEOUT))
until healthy; do
	if ! alive "$pid"; then
		log "error: calcserver (pid $pid) exited before /healthcheck answered; the end of $console:"
		tail -n 30 -- "$console" >&2
		exit 1
	fi
	if ((SECONDS >= deadline)); then
		log "error: calcserver (pid $pid) runs but http://127.0.0.1:$port/healthcheck did not answer within ${CALC_HEALTH_TIMEOUT}s; the end of $console:"
		tail -n 30 -- "$console" >&2
		exit 1
	fi
	sleep 0.1
done
log "calcserver (pid $pid) is up: http://127.0.0.1:$port/healthcheck answers"
