#!/usr/bin/env bash
# The example flag files are accepted by the binaries they are for
# (--check_config: every flag known, every value valid, keys and data
# readable), with key, allowlist and state paths pointed at a scratch
# directory.
#   flagfiles_test.sh FLAG_DIR COORDINATOR AGENT KEYGEN RELAY
set -euo pipefail
flags=$1 coordinator=$2 agent=$3 keygen=$4 relay=$5
work=${TEST_TMPDIR:-$(mktemp -d)}/flags
rm -rf "$work"; mkdir -p "$work/keys"
fail() { echo "FAIL: $*"; exit 1; }
"$keygen" --out="$work/keys/coordinator" >/dev/null 2>&1
"$keygen" --out="$work/keys/board-7" --device_id=board-7 > "$work/allowlist" 2>/dev/null

for f in coordinator-small.flags coordinator-large.flags; do
  out=$("$coordinator" --flagfile="$flags/$f" --key="$work/keys/coordinator" \
        --allowlist="$work/allowlist" --state_dir="$work/state-$f" --check_config 2>&1) \
    || fail "$f: $out"
  echo "$f: $out"
  echo "$out" | grep -q "configuration OK" || fail "$f: $out"
done
# The agent writes its error-feedback residual into --state_dir after every
# task: a directory that is not there must fail the check, not the tasks.
if out=$("$agent" --flagfile="$flags/agent.flags" --key="$work/keys/board-7" \
         --server_key="$work/keys/coordinator.pub" --state_dir="$work/agent" --train_samples=600 \
         --check_config 2>&1); then
  fail "a missing --state_dir passed --check_config: $out"
fi
echo "$out" | grep -q -- "--state_dir: cannot use directory $work/agent" || fail "unclear error: $out"
mkdir -p "$work/agent"
out=$("$agent" --flagfile="$flags/agent.flags" --key="$work/keys/board-7" \
      --server_key="$work/keys/coordinator.pub" --state_dir="$work/agent" --train_samples=600 \
      --check_config 2>&1) || fail "agent.flags: $out"
echo "agent.flags: $out"
echo "$out" | grep -q "configuration OK" || fail "agent.flags: $out"

# The relay's, with its agents' allowlist; one with a relay line is refused
# (a relay's allowlist enrols agents), and so is an out-of-range deadline share.
"$keygen" --out="$work/keys/relay-1" >/dev/null 2>&1
out=$("$relay" --flagfile="$flags/relay.flags" --key="$work/keys/relay-1" \
      --root_key="$work/keys/coordinator.pub" --allowlist="$work/allowlist" --check_config 2>&1) \
  || fail "relay.flags: $out"
echo "relay.flags: $out"
echo "$out" | grep -q "configuration OK" || fail "relay.flags: $out"
"$keygen" --out="$work/keys/relay-2" --device_id=relay-2 --relay > "$work/relays.allowlist" 2>/dev/null
if out=$("$relay" --flagfile="$flags/relay.flags" --key="$work/keys/relay-1" \
         --root_key="$work/keys/coordinator.pub" --allowlist="$work/relays.allowlist" --check_config 2>&1); then
  fail "a relay took an allowlist of relays"
fi
echo "$out" | grep -q "'relay-2' is enrolled as a relay" || fail "unclear error: $out"
if out=$("$relay" --flagfile="$flags/relay.flags" --key="$work/keys/relay-1" \
         --root_key="$work/keys/coordinator.pub" --allowlist="$work/allowlist" --deadline_fraction=1.5 \
         --check_config 2>&1); then
  fail "--deadline_fraction=1.5 was accepted"
fi
echo "$out" | grep -q -- "--deadline_fraction must be in" || fail "unclear error: $out"

# And a bad value is refused with a message naming it.
printf -- '--schedule=pretrain:2,warmup:3\n' > "$work/bad.flags"
if out=$("$coordinator" --flagfile="$flags/coordinator-small.flags" --flagfile="$work/bad.flags" \
         --key="$work/keys/coordinator" --allowlist="$work/allowlist" --state_dir="$work/bad" \
         --check_config 2>&1); then
  fail "an unknown phase was accepted"
fi
echo "$out" | grep -q "unknown phase 'warmup'" || fail "unclear error: $out"
printf -- '--metrics_address=0.0.0.0:99999\n' > "$work/bad-metrics.flags"
if out=$("$coordinator" --flagfile="$flags/coordinator-small.flags" --flagfile="$work/bad-metrics.flags" \
         --key="$work/keys/coordinator" --allowlist="$work/allowlist" --state_dir="$work/bad" \
         --check_config 2>&1); then
  fail "a metrics port out of range was accepted"
fi
echo "$out" | grep -q -- "--metrics_address='0.0.0.0:99999'" || fail "unclear error: $out"
# The agent's link timeouts are checked too.
if out=$("$agent" --flagfile="$flags/agent.flags" --key="$work/keys/board-7" \
         --server_key="$work/keys/coordinator.pub" --state_dir="$work/agent" --train_samples=600 \
         --result_retry_s=0 --check_config 2>&1); then
  fail "--result_retry_s=0 was accepted"
fi
echo "$out" | grep -q -- "--result_retry_s >= 1" || fail "unclear error: $out"
# Its endpoint list: one server key for all or one per endpoint, and a
# failover timeout of at least 2 s.
for bad in "--server_key=$work/keys/coordinator.pub,$work/keys/coordinator.pub,$work/keys/coordinator.pub|names 3 keys for 2 endpoints" \
           "--failover_s=1|--failover_s must be >= 2"; do
  if out=$("$agent" --flagfile="$flags/agent.flags" --key="$work/keys/board-7" \
           --server_key="$work/keys/coordinator.pub" --state_dir="$work/agent" --train_samples=600 \
           --coordinator=tcp://relay-1:7071,tcp://relay-2:7071 "${bad%%|*}" --check_config 2>&1); then
    fail "${bad%%|*} was accepted"
  fi
  echo "$out" | grep -qF -- "${bad#*|}" || fail "unclear error for ${bad%%|*}: $out"
done
# And its data flags: a held-out share outside [0, 1), data that is not there.
for bad in "--holdout=1.5|--holdout must be in [0, 1)" "--data=$work/no-such-data|--data: $work/no-such-data"; do
  if out=$("$agent" --flagfile="$flags/agent.flags" --key="$work/keys/board-7" \
           --server_key="$work/keys/coordinator.pub" --state_dir="$work/agent" --train_samples=600 \
           "${bad%%|*}" --check_config 2>&1); then
    fail "${bad%%|*} was accepted"
  fi
  echo "$out" | grep -qF -- "${bad#*|}" || fail "unclear error for ${bad%%|*}: $out"
done

# --help lists each program's own flags (not "No flags matched").
"$coordinator" --help > "$work/help.txt" 2>&1 || true
grep -q -- "--listen" "$work/help.txt" || fail "coordinator --help: $(head -5 "$work/help.txt")"
grep -q -- "--max_update_scale" "$work/help.txt" || fail "coordinator --help lacks --max_update_scale"
"$agent" --help > "$work/help.txt" 2>&1 || true
grep -q -- "--device_id" "$work/help.txt" || fail "agent --help: $(head -5 "$work/help.txt")"
grep -q -- "--coordinator_timeout_s" "$work/help.txt" || fail "agent --help lacks --coordinator_timeout_s"
grep -q "No flags matched" "$work/help.txt" && fail "agent --help matched no flags"
"$relay" --help > "$work/help.txt" 2>&1 || true
grep -q -- "--deadline_fraction" "$work/help.txt" || fail "relay --help: $(head -5 "$work/help.txt")"
echo "PASS: the example flag files are valid"
