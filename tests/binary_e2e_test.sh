#!/usr/bin/env bash
# End to end over loopback with CURVE, a binary network this time: the
# coordinator runs --arch=mlp (binary weights and activations, memory-saving
# backprop on the agents) with the mixed-precision downlink. Three agents,
# each with other data: a share of Fashion-MNIST; its own IDX pair (plain,
# written here from Fashion-MNIST's test split); its own folder of PNG images
# in class subfolders. An agent whose folder holds colour images is refused
# at start with an error naming the folder. The run completes; the summary
# and metrics carry downlink bytes and the agents' process peak RSS; the
# exported file (1-bit packed weights) evaluates to the coordinator's
# accuracy.
#   binary_e2e_test.sh COORDINATOR AGENT KEYGEN MODEL_TOOL
set -euo pipefail
coordinator_bin=$1 agent_bin=$2 keygen=$3 model_tool=$4
work=${TEST_TMPDIR:-$(mktemp -d)}/binary_e2e
rm -rf "$work"; mkdir -p "$work/keys" "$work/state" "$work/logs" "$work/idx" "$work/pngs" "$work/colour"
port=$((20000 + RANDOM % 20000))
pids=()
cleanup() { kill -9 "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- coordinator"; cat "$work"/logs/coordinator.log; exit 1; }

# Own data: an IDX pair and PNG folders (grey, and colour for the refusal),
# from Fashion-MNIST's test split.
python3 - "$work" <<'PY'
import gzip, struct, sys, zlib
work = sys.argv[1]
d = "/usr/share/datasets/fashion-mnist"
images = gzip.open(d + "/t10k-images-idx3-ubyte.gz").read()[16:]
labels = gzip.open(d + "/t10k-labels-idx1-ubyte.gz").read()[8:]
n = 600
open(work + "/idx/board-images-idx3-ubyte", "wb").write(struct.pack(">IIII", 0x803, n, 28, 28) + images[:n * 784])
open(work + "/idx/board-labels-idx1-ubyte", "wb").write(struct.pack(">II", 0x801, n) + labels[:n])
def png(path, width, height, rows, colour):
    raw = b"".join(b"\0" + r for r in rows)
    chunk = lambda t, b: struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xffffffff)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2 if colour else 0, 0, 0, 0)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
import os
for c in range(10):
    os.makedirs("%s/pngs/class%d" % (work, c))
    os.makedirs("%s/colour/class%d" % (work, c))
for i in range(600, 1200):
    c = labels[i]
    img = images[i * 784:(i + 1) * 784]
    rows = [img[r * 28:(r + 1) * 28] for r in range(28)]
    png("%s/pngs/class%d/%d.png" % (work, c, i), 28, 28, rows, False)
    if i < 700:
        png("%s/colour/class%d/%d.png" % (work, c, i), 28, 28, [bytes(b for p in r for b in (p, p, p)) for r in rows], True)
PY

"$keygen" --out="$work/keys/coordinator" >/dev/null 2>&1
: > "$work/allowlist"
for i in 0 1 2 3; do
  "$keygen" --out="$work/keys/board-$i" --device_id="board-$i" >> "$work/allowlist" 2>/dev/null
done

"$coordinator_bin" --listen="tcp://127.0.0.1:$port" --key="$work/keys/coordinator" \
  --allowlist="$work/allowlist" --state_dir="$work/state" --arch=mlp --min_agents=3 \
  --schedule=pretrain:3 --local_steps=15 --batch=32 --eval_samples=500 --heartbeat_ms=300 \
  --deadline_s=120 > "$work/logs/summary.txt" 2> "$work/logs/coordinator.log" &
coordinator=$!
pids+=("$coordinator")
start_agent() {  # index extra-flags...
  local i=$1; shift
  "$agent_bin" --device_id="board-$i" --coordinator="tcp://127.0.0.1:$port" \
    --key="$work/keys/board-$i" --server_key="$work/keys/coordinator.pub" --memory_budget_mb=64 \
    --arch=mlp "$@" > "$work/logs/board-$i.log" 2>&1 &
  pids+=($!)
}
start_agent 0 --num_agents=3 --agent_index=0 --train_samples=1500
start_agent 1 --data="$work/idx"
start_agent 2 --data="$work/pngs"

# Colour images for a one-channel network: refused at start, naming the folder.
if "$agent_bin" --device_id=board-3 --key="$work/keys/board-3" --server_key="$work/keys/coordinator.pub" \
    --arch=mlp --input_shape=1x28x28 --data="$work/colour" --check_config > "$work/logs/board-3.log" 2>&1; then
  fail "colour data for a grey network was accepted"
fi
grep -q "colour: images are 3x28x28 (channels x height x width), the model takes 1x28x28" \
  "$work/logs/board-3.log" || { cat "$work/logs/board-3.log"; fail "no clear error for colour data"; }

for ((t = 0; t < 3000; t++)); do
  kill -0 "$coordinator" 2>/dev/null || break
  sleep 0.1
done
wait "$coordinator" || fail "the coordinator failed"
grep -q "binary network mlp" "$work/logs/coordinator.log" || fail "not a binary run"
grep -q "540 local samples (60 held out)" "$work/logs/board-1.log" || { cat "$work/logs/board-1.log"; fail "IDX data not read"; }
grep -q "540 local samples (60 held out)" "$work/logs/board-2.log" || { cat "$work/logs/board-2.log"; fail "PNG data not read"; }
[ "$(grep -c '"round"' "$work/state/metrics.jsonl")" -eq 3 ] || fail "not 3 rounds"
python3 - "$work/state/metrics.jsonl" <<'PY' || fail "metrics without downlink bytes or process RSS"
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    assert r["reported"] == 3, r
    assert 0 < r["downlink_bytes"] < r["fp32_downlink_bytes"], r
    assert r["peak_process_rss_bytes"] > r["peak_device_memory_bytes"] > 0, r
    assert r["mean_weight_bits"] == 1, r
PY
grep -q "RSS MB" "$work/logs/summary.txt" || fail "no RSS column in the summary"
"$model_tool" export --arch=mlp --checkpoint="$work/state/checkpoint.bin" --out="$work/model.fbn" \
  > "$work/logs/export.txt" 2>&1 || fail "export: $(cat "$work/logs/export.txt")"
"$model_tool" eval --model="$work/model.fbn" --samples=500 > "$work/logs/eval.txt" 2>&1 \
  || fail "eval: $(cat "$work/logs/eval.txt")"
cat "$work/logs/export.txt" "$work/logs/eval.txt"
measured=$(tail -1 "$work/state/metrics.jsonl" | sed -n 's/.*"test_accuracy": \([0-9.]*\).*/\1/p')
exported=$(sed -n 's/^test accuracy \([0-9.]*\)%.*/\1/p' "$work/logs/eval.txt")
python3 -c "import sys; a, b = float(sys.argv[1]) * 100, float(sys.argv[2]); sys.exit(abs(a - b) > 0.01 or b < 30)" \
  "$measured" "$exported" || fail "exported model: $exported% vs the coordinator's $measured"
echo "PASS: a binary network trained federated on three kinds of local data"
cat "$work/logs/summary.txt"
