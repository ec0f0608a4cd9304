#!/usr/bin/env bash
# Builds the release binary of calcserver and, given a bucket, uploads what the EC2 user
# data (userdata/user-data.sh) downloads:
#
#   s3://BUCKET/PREFIX/calcserver          the static Linux binary
#   s3://BUCKET/PREFIX/calcserver.sha256   its checksum as sha256sum writes it ("<hex>  calcserver")
#   s3://BUCKET/PREFIX/server.ini          the configuration, refused unless calcserver -check accepts it
#
# Usage: make release [BUCKET=my-bucket] [PREFIX=calcserver] [CONFIG=configs/server.ini]
# or the same variables in the environment of `bash scripts/release.sh`:
#
#   BUCKET   bucket to upload to (an s3:// prefix is dropped); unset: build and check only
#   PREFIX   key prefix (default calcserver; empty: the bucket's top level)
#   CONFIG   server.ini to upload (default configs/server.ini of this repository)
#   OUT      directory for calcserver and calcserver.sha256 (default bin of this repository)
#   VERSION  version stamped into the binary (default: git describe --tags --always --dirty)
#   AWS      the AWS CLI command (default aws)
#   GOARCH   target architecture (default: this machine's; arm64 for Graviton instances)
#
# AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, when set, is passed as --endpoint-url (Debian's
# AWS CLI v2 ignores both) and AWS_REGION as --region.
set -euo pipefail

say() { printf 'release: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

repo=$(cd "$(dirname "$0")/.." && pwd)
BUCKET=${BUCKET:-}
BUCKET=${BUCKET#s3://}
BUCKET=${BUCKET%/}
PREFIX=${PREFIX-calcserver}
while [[ $PREFIX == /* ]]; do PREFIX=${PREFIX#/}; done
while [[ $PREFIX == */ ]]; do PREFIX=${PREFIX%/}; done
CONFIG=${CONFIG:-$repo/configs/server.ini}
OUT=${OUT:-$repo/bin}
AWS=${AWS:-aws}

# A relative CONFIG or OUT is relative to where the script was started; the build runs at
# the module root.
[ -f "$CONFIG" ] || die "CONFIG $CONFIG: no such file"
CONFIG=$(realpath -- "$CONFIG")
mkdir -p -- "$OUT"
OUT=$(realpath -- "$OUT")
cd "$repo"
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}

scratch=$(mktemp -d)
trap 'rm -rf -- "$scratch"' EXIT

export CGO_ENABLED=0 GOOS=linux
say "building $OUT/calcserver $VERSION (linux/$(go env GOARCH), static)"
go build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o "$OUT/calcserver.tmp" ./cmd/calcserver
mv -f -- "$OUT/calcserver.tmp" "$OUT/calcserver"
(cd "$OUT" && sha256sum calcserver >calcserver.sha256.tmp && mv -f calcserver.sha256.tmp calcserver.sha256)
say "wrote $OUT/calcserver.sha256: $(cat "$OUT/calcserver.sha256")"

# The checks run the binary; one built for another machine is checked with a build of the
# same source for this one.
check=$OUT/calcserver
if [ "$(go env GOOS)/$(go env GOARCH)" != "$(go env GOHOSTOS)/$(go env GOHOSTARCH)" ]; then
	check=$scratch/calcserver
	GOOS=$(go env GOHOSTOS) GOARCH=$(go env GOHOSTARCH) \
		go build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o "$check" ./cmd/calcserver
fi
got=$("$check" -version)
[ "$got" = "calcserver $VERSION" ] || die "calcserver -version says \"$got\", not \"calcserver $VERSION\""

# calcserver -check also opens the log, which on this machine may not exist where the
# instance will have it (/var/log/calcserver/, say): it checks a copy whose LogLocation
# names a scratch directory. Line numbers stay the same.
mkdir -- "$scratch/log"
sed -E "s|^([[:space:]]*[\"\`]?[[:space:]]*LogLocation[[:space:]]*[\"\`]?[[:space:]]*=).*|LogLocation = \"$scratch/log/\"|I" \
	"$CONFIG" >"$scratch/server.ini"
if ! out=$(cd "$scratch" && "$check" -check -config "$scratch/server.ini" 2>&1 >/dev/null); then
	die "$CONFIG is not valid, nothing uploaded (calcserver -check; LogLocation checked on a scratch directory):
${out//"$scratch/server.ini"/$CONFIG}"
fi
say "$CONFIG passes calcserver -check"

if [ -z "$BUCKET" ]; then
	say "BUCKET is not set: built $OUT/calcserver only, nothing uploaded (make release BUCKET=my-bucket PREFIX=calcserver)"
	exit 0
fi

read -r -a aws <<<"$AWS"
endpoint=${AWS_ENDPOINT_URL_S3:-${AWS_ENDPOINT_URL:-}}
[ -z "$endpoint" ] || aws+=(--endpoint-url "$endpoint")
[ -z "${AWS_REGION:-}" ] || aws+=(--region "$AWS_REGION")
url="s3://$BUCKET${PREFIX:+/$PREFIX}"

# The checksum goes last: an instance that downloads while this runs sees a mismatch and
# refuses, rather than installing half of two releases.
upload() {
	"${aws[@]}" s3 cp --only-show-errors "$1" "$url/$2" || die "cannot upload $url/$2"
	say "uploaded $url/$2"
}
upload "$CONFIG" server.ini &
config_job=$!
upload "$OUT/calcserver" calcserver &
binary_job=$!
wait "$config_job" || exit 1
wait "$binary_job" || exit 1
upload "$OUT/calcserver.sha256" calcserver.sha256
say "released calcserver $VERSION to $url: user data CALC_BUCKET=$BUCKET CALC_PREFIX=$PREFIX"
