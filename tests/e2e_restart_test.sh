#!/usr/bin/env bash
# End to end over loopback, as separate processes with CURVE: a coordinator
# and three agents run a short three-phase schedule. Faults: an agent with a
# key that is not on the allowlist is refused; the coordinator is killed
# (SIGKILL) after the first aggregation and restarted, and must resume from
# its checkpoint with the agents re-registering by themselves; one agent is
# killed mid-run and the run still completes every round. While it runs, the
# metrics endpoint answers with the expected series and the status command
# prints them.
# At the end the checkpoint is exported as a compact model file, which must
# evaluate to the accuracy the coordinator measured on the same samples.
#   e2e_restart_test.sh COORDINATOR AGENT KEYGEN STATUS MODEL_TOOL
set -euo pipefail
coordinator_bin=$1 agent_bin=$2 keygen=$3 status_bin=$4 model_tool=$5
work=${TEST_TMPDIR:-$(mktemp -d)}/e2e
rm -rf "$work"; mkdir -p "$work/keys" "$work/state" "$work/logs"
port=$((20000 + RANDOM % 20000))
metrics_port=$((port + 1))
pids=()
cleanup() { kill -9 "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- coordinator"; cat "$work"/logs/coordinator*.log; exit 1; }

"$keygen" --out="$work/keys/coordinator" >/dev/null 2>&1
: > "$work/allowlist"
for i in 0 1 2; do
  "$keygen" --out="$work/keys/board-$i" --device_id="board-$i" >> "$work/allowlist" 2>/dev/null
done
"$keygen" --out="$work/keys/intruder" >/dev/null 2>&1

start_coordinator() {
  "$coordinator_bin" --listen="tcp://127.0.0.1:$port" --key="$work/keys/coordinator" \
    --allowlist="$work/allowlist" --state_dir="$work/state" --min_agents=2 --quorum=0.6 \
    --schedule=pretrain:1,learn:2,finetune:1 --local_steps=8 --batch=32 --eval_samples=500 \
    --agent_timeout_s=6 --deadline_s=60 --heartbeat_ms=300 \
    --metrics_address="127.0.0.1:$metrics_port" > "$work/logs/summary-$1.txt" \
    2> "$work/logs/coordinator-$1.log" &
  coordinator=$!
  pids+=("$coordinator")
}
start_agent() {  # id key
  "$agent_bin" --device_id="$1" --coordinator="tcp://127.0.0.1:$port" --key="$work/keys/$2" \
    --server_key="$work/keys/coordinator.pub" --memory_budget_mb=64 --num_agents=3 \
    --agent_index="${1#board-}" --train_samples=900 --state_dir="$work/state" \
    > "$work/logs/$1.log" 2>&1 &
  pids+=($!)
}
wait_for() {  # pattern file seconds [pid that must stay alive]
  for ((t = 0; t < $3 * 10; t++)); do
    grep -q "$1" "$2" 2>/dev/null && return 0
    if [ -n "${4:-}" ] && ! kill -0 "$4" 2>/dev/null; then
      grep -q "$1" "$2" 2>/dev/null && return 0
      echo "process $4 exited while waiting for '$1'"
      return 1
    fi
    sleep 0.1
  done
  return 1
}

start_coordinator 1
for i in 0 1 2; do start_agent "board-$i" "board-$i"; done
"$agent_bin" --device_id=board-9 --coordinator="tcp://127.0.0.1:$port" --key="$work/keys/intruder" \
  --server_key="$work/keys/coordinator.pub" --num_agents=3 --agent_index=0 --train_samples=300 \
  > "$work/logs/intruder.log" 2>&1 &
pids+=($!)
intruder=$!

wait_for "round 1/4 done" "$work/logs/coordinator-1.log" 240 "$coordinator" || fail "round 1 never completed"
wait_for "refused a connection" "$work/logs/coordinator-1.log" 10 || fail "the unknown key was not refused"
grep -q "board-9 registered" "$work/logs/coordinator-1.log" && fail "the intruder registered"
kill "$intruder" 2>/dev/null || true

kill -9 "$coordinator"
echo "coordinator killed after round 1; restarting"
start_coordinator 2
wait_for "resumed from" "$work/logs/coordinator-2.log" 30 || fail "no resume from the checkpoint"
wait_for "registered" "$work/logs/coordinator-2.log" 60 || fail "agents did not register again"

# An agent dies for good mid-run: the others finish the schedule.
wait_for "round 2/4 done" "$work/logs/coordinator-2.log" 240 "$coordinator" || fail "round 2 never completed"
kill -9 "${pids[3]}" 2>/dev/null || true   # board-2

# The metrics endpoint, scraped as Prometheus would, and the status command.
python3 - "http://127.0.0.1:$metrics_port" > "$work/logs/metrics.txt" <<'PY' || fail "metrics: $(cat "$work/logs/metrics.txt")"
import sys, urllib.request
base = sys.argv[1]
body = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
print(body)
values = {}
for line in body.splitlines():
    if line and not line.startswith("#"):
        key, value = line.rsplit(" ", 1)
        values[key] = float(value)
def need(key, check):
    if key not in values:
        sys.exit(f"missing series {key}")
    if not check(values[key]):
        sys.exit(f"{key} = {values[key]}: unexpected")
need("fedge_agents_registered", lambda v: v >= 2)
need("fedge_agents_live", lambda v: v >= 2)
need("fedge_rounds_completed", lambda v: v >= 2)
need("fedge_rounds_planned", lambda v: v == 4)
need("fedge_round", lambda v: v >= 2)
need('fedge_phase{phase="learn-precision"}', lambda v: v in (0, 1))
need("fedge_updates_accepted_total", lambda v: v >= 1)
need('fedge_updates_rejected_total{reason="non_finite"}', lambda v: v == 0)
need("fedge_bytes_received_total", lambda v: v > 0)
need("fedge_bytes_sent_total", lambda v: v > 0)
need("fedge_model_size_bytes", lambda v: v > 0)
need("fedge_model_test_accuracy", lambda v: 0 <= v <= 1)
need("fedge_round_duration_seconds_count", lambda v: v >= 1)
for path, code in (("/healthz", 200), ("/readyz", 200)):
    status = urllib.request.urlopen(base + path, timeout=5).status
    if status != code:
        sys.exit(f"{path} answered {status}")
PY
"$status_bin" --coordinator="http://127.0.0.1:$metrics_port" > "$work/logs/status.txt" 2>&1 \
  || fail "status command: $(cat "$work/logs/status.txt")"
grep -q "healthy, ready" "$work/logs/status.txt" || fail "status: $(cat "$work/logs/status.txt")"
grep -Eq "^agents +[0-9]+ registered" "$work/logs/status.txt" || fail "status: no agents row"
cat "$work/logs/status.txt"
wait "$coordinator" || fail "the restarted coordinator exited with an error"

rounds=$(grep -c '"round"' "$work/state/metrics.jsonl")
[ "$rounds" -eq 4 ] || fail "metrics hold $rounds rounds, expected 4 (none lost, none repeated)"
for r in 1 2 3 4; do
  grep -q "\"round\": $r," "$work/state/metrics.jsonl" || fail "round $r missing from the metrics"
done
grep -q "finetune" "$work/state/metrics.jsonl" || fail "the finetune phase never ran"
[ -s "$work/state/rounds.svg" ] || fail "no plot written"
"$model_tool" export --checkpoint="$work/state/checkpoint.bin" --out="$work/model.fqm" \
  > "$work/logs/export.txt" 2>&1 || fail "export: $(cat "$work/logs/export.txt")"
"$model_tool" eval --model="$work/model.fqm" --samples=500 > "$work/logs/eval.txt" 2>&1 \
  || fail "eval: $(cat "$work/logs/eval.txt")"
cat "$work/logs/export.txt" "$work/logs/eval.txt"
measured=$(tail -1 "$work/state/metrics.jsonl" | sed -n 's/.*"test_accuracy": \([0-9.]*\).*/\1/p')
exported=$(sed -n 's/^test accuracy \([0-9.]*\)%.*/\1/p' "$work/logs/eval.txt")
python3 -c "import sys; a, b = float(sys.argv[1]) * 100, float(sys.argv[2]); sys.exit(abs(a - b) > 0.01)" \
  "$measured" "$exported" || fail "exported model: $exported% vs the coordinator's $measured"
echo "PASS: 4 rounds across a coordinator restart and an agent loss"
cat "$work/logs/summary-2.txt"
