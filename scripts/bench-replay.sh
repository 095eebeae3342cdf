#!/usr/bin/env bash
# Replay throughput, side by side: vigil replay on 1 and 2 cores against
# jq -c 'select(.objectRef.resource=="secrets")' over the same generated
# audit log.
#
#   scripts/bench-replay.sh [EVENTS]      (default 1000000)
#
# Environment: SEED (default 1), KEEP=1 keeps the temporary directory.
set -euo pipefail

n=${1:-1000000}
seed=${SEED:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vigil-bench.XXXXXX")
if [[ "${KEEP:-}" != 1 ]]; then
	trap 'rm -rf "$tmp"' EXIT
fi

if ! command -v jq >/dev/null; then
	echo "installing jq" >&2
	if [[ $(id -u) == 0 ]]; then
		apt-get install -y -qq jq >/dev/null
	else
		sudo apt-get install -y -qq jq >/dev/null
	fi
fi

echo "building vigil and vigil-gen" >&2
(cd "$root" && go build -o "$tmp/vigil" ./cmd/vigil && go build -o "$tmp/vigil-gen" ./cmd/vigil-gen)

log="$tmp/audit.log"
echo "generating $n events" >&2
"$tmp/vigil-gen" -n "$n" -seed "$seed" -o "$log"
bytes=$(stat -c %s "$log")
# Read the file once so every contender starts from the page cache.
cat "$log" >/dev/null
rules=$(( $("$tmp/vigil" rules list | wc -l) - 1 ))

# seconds CMD... runs CMD and prints its wall time in seconds.
seconds() {
	local t0 t1
	t0=$(date +%s.%N)
	"$@" || { echo "failed: $*" >&2; exit 1; }
	t1=$(date +%s.%N)
	calc "$t1 - $t0"
}

# calc EXPR evaluates a floating-point expression.
calc() { awk "BEGIN { print $1 }"; }

echo "running vigil replay (1 core)" >&2
v1=$(seconds env GOMAXPROCS=1 "$tmp/vigil" replay --quiet -o /dev/null "$log")
echo "running vigil replay (2 cores)" >&2
v2=$(seconds env GOMAXPROCS=2 "$tmp/vigil" replay --quiet -o /dev/null "$log")
echo "running jq" >&2
jqs=$(seconds sh -c 'jq -c '\''select(.objectRef.resource=="secrets")'\'' "$1" >/dev/null' sh "$log")

rate() { printf '%.0f' "$(calc "$n / $1")"; }
ratio() { printf '%.1f' "$(calc "$jqs / $1")"; }

echo
printf 'input: %d events, %.2f GB, %d bytes/event, %d rules, %s\n' \
	"$n" "$(calc "$bytes / 1000000000")" $((bytes / n)) "$rules" "$(nproc) CPUs"
printf '%-28s %9s %12s %8s\n' "" seconds events/s "vs jq"
printf '%-28s %9.2f %12s %7sx\n' "vigil replay GOMAXPROCS=1" "$v1" "$(rate "$v1")" "$(ratio "$v1")"
printf '%-28s %9.2f %12s %7sx\n' "vigil replay GOMAXPROCS=2" "$v2" "$(rate "$v2")" "$(ratio "$v2")"
printf '%-28s %9.2f %12s %7sx\n' "jq select secrets" "$jqs" "$(rate "$jqs")" "1.0"
printf '2 cores / 1 core: %.2fx\n' "$(calc "$v1 / $v2")"
