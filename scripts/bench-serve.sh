#!/usr/bin/env bash
# Live-path throughput and acknowledgement latency: vigil serve on a fresh
# data dir with the built-in rules, and vigil-loadgen posting 400-event
# EventLists to it on loopback, over plain HTTP and over TLS with the
# generated client certificate. Each run measures after a warm-up.
#
#   scripts/bench-serve.sh [SECONDS]      (measured seconds a run, default 30)
#
# Environment: WARMUP (default 10s), PORT (base port, default 18080),
# KEEP=1 keeps the temporary directory.
set -euo pipefail

secs=${1:-30}
warmup=${WARMUP:-10s}
port=${PORT:-18080}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vigil-bench.XXXXXX")
pid=
cleanup() {
	if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	if [[ "${KEEP:-}" != 1 ]]; then rm -rf "$tmp"; fi
}
trap cleanup EXIT

echo "building vigil and vigil-loadgen" >&2
(cd "$root" && go build -o "$tmp/vigil" ./cmd/vigil && go build -o "$tmp/vigil-loadgen" ./cmd/vigil-loadgen)

ops=127.0.0.1:$((port + 1))

# start [serve flags...] starts vigil serve on a fresh data dir and waits
# until it is ready.
start() {
	rm -rf "$tmp/data"
	"$tmp/vigil" serve --data-dir "$tmp/data" --ops-listen "$ops" -o /dev/null "$@" 2>"$tmp/serve.log" &
	pid=$!
	for _ in $(seq 100); do
		if curl -fs "http://$ops/readyz" >/dev/null 2>&1; then return; fi
		sleep 0.1
	done
	echo "vigil serve did not become ready:" >&2
	cat "$tmp/serve.log" >&2
	exit 1
}

stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

# load NAME RATE [loadgen flags...] runs one measured load and prints a row.
load() {
	local name=$1 rate=$2
	shift 2
	echo "running $name" >&2
	"$tmp/vigil-loadgen" -rate "$rate" -batch 400 -warmup "$warmup" -duration "${secs}s" \
		-metrics "http://$ops/metrics" "$@" >"$tmp/out"
	awk -v name="$name" '
		/^accepted/ { acc = $4 }
		/^ack latency/ { p50 = $4; p99 = $6 }
		/^processed/ { proc = $4 }
		END { printf "%-34s %12s %12s %10s %10s\n", name, acc, proc, p50, p99 }' "$tmp/out"
}

rows=()
start --insecure-listen "127.0.0.1:$port"
rows+=("$(load "plain HTTP, 50k/s" 50000 -url "http://127.0.0.1:$port/audit")")
stop
start --insecure-listen "127.0.0.1:$port"
rows+=("$(load "plain HTTP, 100k/s" 100000 -url "http://127.0.0.1:$port/audit")")
stop
start --insecure-listen "127.0.0.1:$port"
rows+=("$(load "plain HTTP, 150k/s" 150000 -url "http://127.0.0.1:$port/audit")")
stop
start --insecure-listen "127.0.0.1:$port"
rows+=("$(load "plain HTTP, as fast as acked" 0 -url "http://127.0.0.1:$port/audit")")
stop
start --listen "127.0.0.1:$port" --advertise-url "https://127.0.0.1:$port/audit"
rows+=("$(load "TLS + client cert, 50k/s" 50000 -kubeconfig "$tmp/data/webhook-kubeconfig.yaml")")
stop

echo
printf 'vigil serve and vigil-loadgen on %s CPUs, 400-event batches, %ss measured after %s\n' "$(nproc)" "$secs" "$warmup"
printf '%-34s %12s %12s %10s %10s\n' "" "accepted/s" "processed/s" "p50" "p99"
printf '%s\n' "${rows[@]}"
