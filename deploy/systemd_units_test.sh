#!/usr/bin/env bash
# The systemd units verify (systemd-analyze verify, no warnings) with their
# ExecStart binaries pointed at the ones just built, carry the hardening the
# operator docs promise, and a broken unit is caught.
#   systemd_units_test.sh UNIT_DIR COORDINATOR AGENT RELAY
set -euo pipefail
units=$1 coordinator=$(readlink -f "$2") agent=$(readlink -f "$3") relay=$(readlink -f "$4")
work=${TEST_TMPDIR:-$(mktemp -d)}/units
rm -rf "$work"; mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
command -v systemd-analyze >/dev/null || fail "systemd-analyze not installed (./fedge setup installs systemd)"

for unit in fedge-coordinator.service fedge-agent.service fedge-relay.service; do
  sed -e "s|/usr/local/bin/fedge-coordinator|$coordinator|g" -e "s|/usr/local/bin/fedge-agent|$agent|g" \
    -e "s|/usr/local/bin/fedge-relay|$relay|g" \
    "$units/$unit" > "$work/$unit"
  for key in "User=fedge" "Restart=" "StateDirectory=" "MemoryMax=" "TasksMax=" "LimitNOFILE=" \
             "NoNewPrivileges=yes" "ProtectSystem=strict" "CapabilityBoundingSet=" "KillSignal=SIGTERM"; do
    grep -q "^$key" "$work/$unit" || fail "$unit has no $key line"
  done
done
out=$(cd "$work" && systemd-analyze verify --man=no fedge-coordinator.service fedge-agent.service \
        fedge-relay.service 2>&1) \
  || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify warns: $out"

# The check must be able to fail: a misspelt key and a missing binary.
sed -e 's/^NoNewPrivileges=/NoNewPrivilege=/' "$work/fedge-agent.service" > "$work/broken-key.service"
out=$(cd "$work" && systemd-analyze verify --man=no broken-key.service 2>&1 || true)
echo "$out" | grep -q "Unknown key" || fail "a misspelt key went unnoticed: $out"
sed -e "s|$agent|/nonexistent/fedge-agent|" "$work/fedge-agent.service" > "$work/broken-exec.service"
if (cd "$work" && systemd-analyze verify --man=no broken-exec.service >/dev/null 2>&1); then
  fail "a missing ExecStart binary went unnoticed"
fi
grep -q '^u fedge ' "$units/fedge.sysusers.conf" || fail "no sysusers entry for the fedge user"
echo "PASS: fedge-coordinator.service, fedge-agent.service and fedge-relay.service verify"
