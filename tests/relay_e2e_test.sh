#!/usr/bin/env bash
# Relays over real ZeroMQ with CURVE, in separate processes: the root, two
# relays (each enrolled on the root's allowlist as a relay, with its own
# key) and four agents, two behind each relay, each agent given both relays
# in failover order. Before the run, a relay's key used by an agent and an
# agent's key used by a relay are both refused (wrong_role). In round 2,
# while its agents train, relay-a is SIGKILLed: its agents fail over to
# relay-b and the run completes, its last rounds with all four agents
# through relay-b. The relay's /metrics counts its partials.
#   relay_e2e_test.sh COORDINATOR RELAY AGENT KEYGEN
set -euo pipefail
coordinator_bin=$1 relay_bin=$2 agent_bin=$3 keygen=$4
work=${TEST_TMPDIR:-$(mktemp -d)}/relay_e2e
rm -rf "$work"; mkdir -p "$work/keys" "$work/state" "$work/logs"
base=$((20000 + RANDOM % 20000))
root_port=$base relay_a_port=$((base + 1)) relay_b_port=$((base + 2)) metrics_port=$((base + 3))
pids=()
cleanup() { kill -9 "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$work"/logs/*.log; do echo "--- $f"; tail -30 "$f"; done
  exit 1
}
wait_for() {  # seconds pattern file
  for ((t = 0; t < $1 * 10; t++)); do
    grep -q "$2" "$3" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "no '$2' in $3 after $1 s"
}

"$keygen" --out="$work/keys/coordinator" >/dev/null 2>&1
: > "$work/root.allowlist"; : > "$work/agents.allowlist"
for r in relay-a relay-b; do
  "$keygen" --out="$work/keys/$r" --device_id="$r" --relay >> "$work/root.allowlist" 2>/dev/null
done
"$keygen" --out="$work/keys/board-x" --device_id=board-x >> "$work/root.allowlist" 2>/dev/null
for i in 0 1 2 3; do
  "$keygen" --out="$work/keys/board-$i" --device_id="board-$i" >> "$work/agents.allowlist" 2>/dev/null
done
grep -q "^relay-a .* relay$" "$work/root.allowlist" || fail "keygen --relay wrote no relay line"

"$coordinator_bin" --listen="tcp://127.0.0.1:$root_port" --key="$work/keys/coordinator" \
  --allowlist="$work/root.allowlist" --state_dir="$work/state" --arch=mlp --min_agents=4 \
  --schedule=pretrain:4 --local_steps=150 --batch=32 --eval_samples=300 --heartbeat_ms=300 \
  --agent_timeout_s=3 --deadline_s=120 > "$work/logs/summary.txt" 2> "$work/logs/coordinator.log" &
pids+=($!)
coordinator=$!
start_relay() {  # id port [extra flags]
  local id=$1 port=$2; shift 2
  "$relay_bin" --id="$id" --root="tcp://127.0.0.1:$root_port" \
    --root_key="$work/keys/coordinator.pub" --key="$work/keys/$id" \
    --listen="tcp://127.0.0.1:$port" --allowlist="$work/agents.allowlist" --heartbeat_ms=300 \
    --agent_timeout_s=3 --root_timeout_s=10 "$@" > "$work/logs/$id.log" 2>&1 &
  pids+=($!)
}

# Roles: an agent's key acting as a relay, a relay's key acting as an agent.
start_relay board-x $((base + 4))
impostor_relay=$!
"$agent_bin" --device_id=relay-a --coordinator="tcp://127.0.0.1:$root_port" \
  --key="$work/keys/relay-a" --server_key="$work/keys/coordinator.pub" --arch=mlp \
  --num_agents=4 --agent_index=0 --train_samples=400 > "$work/logs/impostor-agent.log" 2>&1 &
impostor_agent=$!
pids+=("$impostor_agent")
# (The logs escape quotes.)
wait_for 60 "board-x.' is not enrolled as a relay" "$work/logs/board-x.log"
wait_for 60 "relay-a.' is enrolled as a relay: it cannot register as an agent" \
  "$work/logs/impostor-agent.log"
kill "$impostor_relay" "$impostor_agent" 2>/dev/null || true
grep -q "wrong_role" "$work/logs/coordinator.log" || fail "the root did not log the wrong roles"
grep -q "board-x registered\|relay-a registered: " "$work/logs/coordinator.log" \
  && fail "a key registered in the wrong role"

start_relay relay-a "$relay_a_port"
relay_a=$!
start_relay relay-b "$relay_b_port" --metrics_address="127.0.0.1:$metrics_port"
a="tcp://127.0.0.1:$relay_a_port" b="tcp://127.0.0.1:$relay_b_port"
start_agent() {  # index endpoints server-keys
  "$agent_bin" --device_id="board-$1" --coordinator="$2" --server_key="$3" \
    --key="$work/keys/board-$1" --arch=mlp --memory_budget_mb=64 --num_agents=4 \
    --agent_index="$1" --train_samples=4000 --failover_s=3 --coordinator_timeout_s=10 \
    > "$work/logs/board-$1.log" 2>&1 &
  pids+=($!)
}
ka="$work/keys/relay-a.pub" kb="$work/keys/relay-b.pub"
start_agent 0 "$a,$b" "$ka,$kb"
start_agent 1 "$a,$b" "$ka,$kb"
start_agent 2 "$b,$a" "$kb,$ka"
start_agent 3 "$b,$a" "$kb,$ka"

wait_for 180 "round 2 (pretrain): task" "$work/logs/relay-a.log"
kill -9 "$relay_a"
echo "relay-a killed in round 2"
grep -q "round 2: partial" "$work/logs/relay-a.log" && echo "note: relay-a had sent its partial"

for ((t = 0; t < 3000; t++)); do
  kill -0 "$coordinator" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$coordinator" 2>/dev/null && fail "the run did not finish"
wait "$coordinator" || fail "the coordinator failed"
grep -q "relay-a registered as a relay of" "$work/logs/coordinator.log" || fail "relay-a never registered"
grep -q "failed over to the next endpoint" "$work/logs/board-0.log" || fail "board-0 did not fail over"
grep -q "failed over to the next endpoint" "$work/logs/board-1.log" || fail "board-1 did not fail over"
[ "$(grep -c '"round"' "$work/state/metrics.jsonl")" -eq 4 ] || fail "not 4 rounds"
python3 - "$work/state/metrics.jsonl" <<'PY' || fail "rounds not as expected"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert rows[0]["reported"] == 4, rows[0]
assert rows[1]["reported"] >= 2, rows[1]   # relay-b's agents at least
assert rows[3]["reported"] == 4, rows[3]   # all four through relay-b
PY
python3 - "$metrics_port" <<'PY' || fail "relay-b's metrics"
import sys, urllib.request
body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode()
values = {l.split()[0]: float(l.split()[1]) for l in body.splitlines() if l and not l.startswith("#")}
assert values["fedge_relay_partials_total"] >= 3, values
assert values["fedge_relay_agents_live"] == 4, values
assert values["fedge_relay_upstream_ready"] == 1, values
PY
echo "PASS: root + 2 relays + 4 agents; relay-a killed mid-run, its agents moved to relay-b"
cat "$work/logs/summary.txt"
