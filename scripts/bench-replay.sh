#!/usr/bin/env bash
# Replay throughput, side by side with jq over the same generated audit
# logs: the default vigil-gen mix and the attack-heavy mix, each replayed
# with 1 worker on 1 core, 2 workers on 2 cores and all cores, against
# jq -c 'select(.verb=="delete")' writing to /dev/null.
#
#   scripts/bench-replay.sh [EVENTS]      (default 300000)
#
# Every contender runs RUNS times (default 3) from the page cache and the
# fastest run counts: the machine's other work slows single runs, never
# speeds them. The load average before and after is printed with the table.
#
# Environment: SEED (default 7), RUNS (default 3), KEEP=1 keeps the
# temporary directory, ALLOCS=1 also runs the engine benchmark for the
# allocations per event.
set -euo pipefail

n=${1:-300000}
seed=${SEED:-7}
runs=${RUNS:-3}
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
rules=$(( $("$tmp/vigil" rules list | wc -l) - 1 ))
cores=$(nproc)

# calc EXPR evaluates a floating-point expression.
calc() { awk "BEGIN { print $1 }"; }

# best CMD... runs CMD RUNS times and prints the fastest wall time in
# seconds.
best() {
	local t0 t1 s b=""
	for _ in $(seq "$runs"); do
		t0=$(date +%s.%N)
		"$@" || { echo "failed: $*" >&2; exit 1; }
		t1=$(date +%s.%N)
		s=$(calc "$t1 - $t0")
		if [[ -z "$b" ]] || awk "BEGIN { exit !($s < $b) }"; then
			b=$s
		fi
	done
	echo "$b"
}

replay() { "$tmp/vigil" replay --quiet -o /dev/null "$@"; }
jqdelete() { jq -c 'select(.verb=="delete")' "$1" >/dev/null; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A secs size
for profile in mix attack-heavy; do
	log="$tmp/$profile.log"
	echo "generating $n events ($profile)" >&2
	"$tmp/vigil-gen" -n "$n" -seed "$seed" -profile "$profile" -o "$log"
	cat "$log" >/dev/null # into the page cache
	echo "replaying $profile" >&2
	secs[$profile,w1]=$(best env GOMAXPROCS=1 "$tmp/vigil" replay --quiet -o /dev/null --workers 1 "$log")
	if ((cores >= 2)); then
		secs[$profile,w2]=$(best env GOMAXPROCS=2 "$tmp/vigil" replay --quiet -o /dev/null --workers 2 "$log")
	fi
	secs[$profile,all]=$(best replay "$log")
	echo "running jq on $profile" >&2
	secs[$profile,jq]=$(best jqdelete "$log")
	size[$profile]=$(stat -c %s "$log")
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

rate() { printf '%.0f' "$(calc "$n / $1")"; }
ratio() { printf '%.1f' "$(calc "$2 / $1")"; }

echo
printf 'vigil replay vs jq: %d events per input, %d rules, %d CPUs, best of %d runs\n' "$n" "$rules" "$cores" "$runs"
printf 'load average before %s, after %s\n' "$load_before" "$load_after"
for profile in mix attack-heavy; do
	jqs=${secs[$profile,jq]}
	printf '\n%s (%d bytes/event)\n' "$profile" $((size[$profile] / n))
	printf '  %-34s %8s %11s %7s\n' "" seconds events/s "vs jq"
	row() { printf '  %-34s %8.2f %11s %6sx\n' "$1" "$2" "$(rate "$2")" "$(ratio "$2" "$jqs")"; }
	row "vigil replay, 1 worker, 1 core" "${secs[$profile,w1]}"
	if ((cores >= 2)); then
		row "vigil replay, 2 workers, 2 cores" "${secs[$profile,w2]}"
	fi
	row "vigil replay, all cores" "${secs[$profile,all]}"
	row "jq -c 'select(.verb==\"delete\")'" "$jqs"
	if ((cores >= 2)); then
		printf '  2 workers / 1 worker: %.2fx\n' "$(calc "${secs[$profile,w1]} / ${secs[$profile,w2]}")"
	fi
done

if [[ "${ALLOCS:-}" == 1 ]]; then
	echo
	echo "engine benchmark (allocations per event):"
	(cd "$root" && go test ./detect -run '^$' -bench 'Replay/run' -benchmem -cpu 1 | grep -E 'Benchmark')
fi
