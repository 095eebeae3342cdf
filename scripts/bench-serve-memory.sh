#!/usr/bin/env bash
# Memory of vigil serve under sustained load: vigil-loadgen posts at RATE
# events/s for SECONDS on loopback while the resident memory (VmRSS), the
# Go heap in use and the events processed are sampled every 10 s.
#
#   scripts/bench-serve-memory.sh [RATE] [SECONDS]     (defaults 100000 and 300)
#
# Environment: PORT (base port, default 18180), KEEP=1 keeps the temporary
# directory, SERVE_FLAGS are added to vigil serve's flags.
set -euo pipefail

rate=${1:-100000}
secs=${2:-300}
port=${PORT:-18180}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vigil-mem.XXXXXX")
pid=
gen=
cleanup() {
	if [[ -n "$gen" ]]; then kill "$gen" 2>/dev/null || true; wait "$gen" 2>/dev/null || true; fi
	if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	if [[ "${KEEP:-}" != 1 ]]; then rm -rf "$tmp"; fi
}
trap cleanup EXIT

echo "building vigil and vigil-loadgen" >&2
(cd "$root" && go build -o "$tmp/vigil" ./cmd/vigil && go build -o "$tmp/vigil-loadgen" ./cmd/vigil-loadgen)

ops=127.0.0.1:$((port + 1))
# shellcheck disable=SC2086
"$tmp/vigil" serve --data-dir "$tmp/data" --ops-listen "$ops" --insecure-listen "127.0.0.1:$port" \
	-o /dev/null ${SERVE_FLAGS:-} 2>"$tmp/serve.log" &
pid=$!
for _ in $(seq 100); do
	if curl -fs "http://$ops/readyz" >/dev/null 2>&1; then break; fi
	sleep 0.1
done
curl -fs "http://$ops/readyz" >/dev/null || { cat "$tmp/serve.log" >&2; exit 1; }

"$tmp/vigil-loadgen" -url "http://127.0.0.1:$port/audit" -rate "$rate" -batch 400 -duration "${secs}s" \
	-metrics "http://$ops/metrics" >"$tmp/loadgen.out" 2>&1 &
gen=$!

metric() { curl -fs "http://$ops/metrics" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%.0f", s }'; }
printf '%6s %10s %10s %14s %12s\n' "s" "RSS MB" "heap MB" "processed" "events/s"
last=0
for ((t = 10; t <= secs; t += 10)); do
	sleep 10
	rss=$(awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$pid/status")
	heap=$(($(metric vigil_serve_heap_inuse_bytes) / 1048576))
	done_=$(metric vigil_serve_processed_events_total)
	printf '%6d %10s %10s %14s %12s\n' "$t" "$rss" "$heap" "$done_" "$(((done_ - last) / 10))"
	last=$done_
done
wait "$gen" || true
gen=
echo
cat "$tmp/loadgen.out"
