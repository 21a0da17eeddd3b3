#!/usr/bin/env bash
# Runs the wire decoder fuzzer for a bounded time from a corpus seeded with
# valid messages. Fails if the fuzzer finds a crash, a leak, undefined
# behaviour or a timeout.
#   wire_fuzz_test.sh FUZZER SEED_WRITER [SECONDS]
set -euo pipefail
fuzzer=$1
seeds=$2
seconds=${3:-20}
corpus=${TEST_TMPDIR:-$(mktemp -d)}/corpus
artifacts=${TEST_UNDECLARED_OUTPUTS_DIR:-${TEST_TMPDIR:-/tmp}}/
mkdir -p "$corpus"
"$seeds" "$corpus"
echo "seed corpus: $(ls "$corpus" | wc -l) messages"
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -seed=1 -artifact_prefix="$artifacts" -print_final_stats=1 "$corpus"
