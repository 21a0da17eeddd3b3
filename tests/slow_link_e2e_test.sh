#!/usr/bin/env bash
# Over a 256 kbit/s link, as separate processes with CURVE: the coordinator
# in a network namespace of its own, each of two agents in another, joined
# by veth pairs whose both ends are shaped by the kernel's token-bucket
# filter (tc tbf) to 256 kbit/s. A fmnist-cnn task is 853 kB (27 s at that
# rate), so replies to heartbeats queue behind it for as long: every round
# must still complete without waiting out its deadline, with no agent taking
# the slow download for a dead coordinator, and none of its tasks sent twice.
# Also: the status command before the first round says no round has run.
#   slow_link_e2e_test.sh COORDINATOR AGENT KEYGEN STATUS
set -euo pipefail
coordinator_bin=$(realpath "$1") agent_bin=$(realpath "$2") keygen=$(realpath "$3")
status_bin=$(realpath "$4")
work=${TEST_TMPDIR:-$(mktemp -d)}/slow
rm -rf "$work"; mkdir -p "$work/keys" "$work/state" "$work/logs"
rate=256kbit
tag=$$
ns_c="fedge-c-$tag"
pids=()
namespaces=()
cleanup() {
  kill -9 "${pids[@]}" 2>/dev/null || true
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- coordinator"; cat "$work"/logs/coordinator.log; exit 1; }

if ! ip netns add "$ns_c" 2>"$work/logs/netns.txt"; then
  echo "FAIL: this test needs root and network namespaces (ip netns add: $(cat "$work/logs/netns.txt"))"
  exit 1
fi
namespaces+=("$ns_c")
ip -n "$ns_c" link set lo up
# Two agents, each behind its own shaped link.
for i in 1 2; do
  ns="fedge-a$i-$tag"
  ip netns add "$ns"; namespaces+=("$ns")
  ip link add "fc$i-$tag" netns "$ns_c" type veth peer name "fa$i-$tag" netns "$ns"
  ip -n "$ns_c" addr add "10.77.$i.1/24" dev "fc$i-$tag"
  ip -n "$ns" addr add "10.77.$i.2/24" dev "fa$i-$tag"
  ip -n "$ns_c" link set "fc$i-$tag" up
  ip -n "$ns" link set "fa$i-$tag" up
  ip -n "$ns" link set lo up
  ip netns exec "$ns_c" tc qdisc add dev "fc$i-$tag" root tbf rate "$rate" burst 4kb latency 2s
  ip netns exec "$ns" tc qdisc add dev "fa$i-$tag" root tbf rate "$rate" burst 4kb latency 2s
done
ip netns exec "$ns_c" tc qdisc show dev "fc1-$tag" | grep -q "rate 256Kbit" || fail "tbf not applied"

"$keygen" --out="$work/keys/coordinator" >/dev/null 2>&1
: > "$work/allowlist"
for i in 1 2; do
  "$keygen" --out="$work/keys/board-$i" --device_id="board-$i" >> "$work/allowlist" 2>/dev/null
done

port=7070
deadline=90
ip netns exec "$ns_c" "$coordinator_bin" --listen="tcp://*:$port" --key="$work/keys/coordinator" \
  --allowlist="$work/allowlist" --state_dir="$work/state" --min_agents=2 \
  --schedule=pretrain:1,learn:1,finetune:1 --local_steps=4 --batch=32 --eval_samples=200 \
  --deadline_s=$deadline --metrics_address="127.0.0.1:9090" \
  > "$work/logs/summary.txt" 2> "$work/logs/coordinator.log" &
coordinator=$!
pids+=("$coordinator")

# Before any agent: the status says no round has run, not "0 B at 0.00 bits".
for ((t = 0; t < 300; t++)); do
  ip netns exec "$ns_c" "$status_bin" --coordinator=http://127.0.0.1:9090 > "$work/logs/status0.txt" 2>&1 && break
  sleep 0.1
done
grep -q "after the first round" "$work/logs/status0.txt" || fail "status before round 1: $(cat "$work/logs/status0.txt")"
grep -q "0.00 weight" "$work/logs/status0.txt" && fail "status before round 1 shows zero bits"

start=$(date +%s)
for i in 1 2; do
  ip netns exec "fedge-a$i-$tag" "$agent_bin" --device_id="board-$i" \
    --coordinator="tcp://10.77.$i.1:$port" --key="$work/keys/board-$i" \
    --server_key="$work/keys/coordinator.pub" --memory_budget_mb=512 --num_agents=2 \
    --agent_index=$((i - 1)) --train_samples=600 --state_dir="$work/state" \
    > "$work/logs/board-$i.log" 2>&1 &
  pids+=($!)
done
wait "$coordinator" || fail "the coordinator exited with an error"
elapsed=$(( $(date +%s) - start ))
cat "$work/logs/coordinator.log" | grep -E "round|registered" || true

for r in 1 2 3; do
  grep -q "round $r/3 done" "$work/logs/coordinator.log" || fail "round $r did not complete"
done
grep -q "got no accepted result" "$work/logs/coordinator.log" && fail "a round was run again"
grep -q "sending task .* again" "$work/logs/coordinator.log" && fail "a task was sent twice"
for i in 1 2; do
  n=$(grep -c "board-$i registered" "$work/logs/coordinator.log")
  [ "$n" -eq 1 ] || fail "board-$i registered $n times (took the slow download for a dead coordinator)"
done
# No round waited out its deadline.
python3 - "$work/state/metrics.jsonl" "$deadline" <<'PY' || fail "a round waited its deadline"
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
assert len(rows) == 3, rows
for row in rows:
    assert row["reported"] == 2, row
    assert row["seconds"] < float(sys.argv[2]), row
    print(f"round {row['round']}: {row['seconds']:.1f} s, {row['reported']} results")
PY
# SIGTERM is a clean stop, not an error: a coordinator resumed after its
# schedule (serving until stopped) and the agents are told to stop.
ip netns exec "$ns_c" "$coordinator_bin" --listen="tcp://*:$port" --key="$work/keys/coordinator" \
  --allowlist="$work/allowlist" --state_dir="$work/state" --min_agents=2 \
  --schedule=pretrain:1,learn:1,finetune:1 --eval_samples=0 --exit_when_done=false \
  > /dev/null 2> "$work/logs/coordinator-stop.log" &
coordinator=$!
pids+=("$coordinator")
for ((t = 0; t < 300; t++)); do
  grep -q "rounds are all done" "$work/logs/coordinator-stop.log" && break
  sleep 0.1
done
sleep 1
kill -TERM "$coordinator" "${pids[@]:1}" 2>/dev/null || true
wait "$coordinator" || fail "the coordinator exited with an error on SIGTERM"
sleep 1
grep -q "stopped by signal" "$work/logs/coordinator-stop.log" || fail "no clean stop: $(cat "$work/logs/coordinator-stop.log")"
if grep -l "Interrupted system call" "$work"/logs/*.log; then
  fail "SIGTERM logged as an error"
fi
echo "PASS: 3 rounds over ${rate} links in ${elapsed} s"
