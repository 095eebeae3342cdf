#!/usr/bin/env bash
# Runs every fuzz target for a bounded time, one after the other: the JSON
# scanner, the event decoder, the webhook body splitter, the one-pass readers
# of EKS and AKS records (against the parser), the rule loader and the
# config loader. A crash stops the script with go test's report; the
# failing input is written under the package's testdata/fuzz/FuzzX/, where
# it stays as a regression case for plain `go test`.
#
#   scripts/fuzz.sh [SECONDS]      (per target, default 20)
#
# Environment: FUZZ_PARALLEL (fuzzing processes per target, default: go
# test's, all cores), FUZZ_MINIMIZE (time spent shrinking each new
# interesting input, default 5s: large inputs otherwise eat the budget).
set -euo pipefail

seconds=${1:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

targets=(
	"./ingest/internal/jsonscan FuzzValue"
	"./ingest FuzzDecode"
	"./ingest FuzzParseTime"
	"./ingest/webhook FuzzParseBody"
	"./ingest/internal/jsonscan FuzzAppendString"
	"./ingest/envelope FuzzFastCloudWatch"
	"./ingest/envelope FuzzFastAKS"
	"./ingest/envelope FuzzFastGKE"
	"./detect FuzzRuleFile"
	"./cmd/vigil FuzzConfig"
)
extra=(-fuzzminimizetime "${FUZZ_MINIMIZE:-5s}")
if [[ -n "${FUZZ_PARALLEL:-}" ]]; then
	extra+=(-parallel "$FUZZ_PARALLEL")
fi
# fuzz PKG NAME runs one target. The fuzzing engine sometimes fails a run
# with "context deadline exceeded" when a worker is slow to stop at the end
# of -fuzztime, on a busy machine, without any failing input: such a run is
# tried again once. A crash always writes its input and fails at once.
fuzz() {
	local out
	if out=$(go test "$1" -run '^$' -fuzz "^$2\$" -fuzztime "${seconds}s" "${extra[@]}" 2>&1); then
		printf '%s\n' "$out"
		return
	fi
	printf '%s\n' "$out"
	if grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input written' <<<"$out"; then
		echo "fuzz: $1 $2 stopped late without a failing input; once more" >&2
		go test "$1" -run '^$' -fuzz "^$2\$" -fuzztime "${seconds}s" "${extra[@]}"
		return
	fi
	return 1
}

for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "fuzz: $pkg $name for ${seconds}s" >&2
	fuzz "$pkg" "$name"
done
