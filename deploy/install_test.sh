#!/usr/bin/env bash
# deploy/install.sh stages every file where the units and docs expect it,
# with the right modes, and keeps an operator's edited flag file.
#   install_test.sh COORDINATOR STATUS MODEL_TOOL AGENT KEYGEN RELAY
set -euo pipefail
work=${TEST_TMPDIR:-$(mktemp -d)}/install
rm -rf "$work"; mkdir -p "$work/bin"
fail() { echo "FAIL: $*"; exit 1; }
for b in "$@"; do cp "$(readlink -f "$b")" "$work/bin/$(basename "$b")"; done
mode() { stat -c %a "$1"; }

for role in coordinator agent relay; do
  root="$work/root-$role"
  DESTDIR=$root FEDGE_BIN_DIR=$work/bin deploy/install.sh "$role" 2> "$work/$role.log" \
    || fail "install $role: $(cat "$work/$role.log")"
  [ -x "$root/usr/local/bin/fedge-keygen" ] || fail "$role: no fedge-keygen"
  [ -f "$root/usr/lib/sysusers.d/fedge.conf" ] || fail "$role: no sysusers entry"
  [ "$(mode "$root/etc/fedge")" = 750 ] || fail "$role: /etc/fedge is $(mode "$root/etc/fedge")"
  unit="$root/etc/systemd/system/fedge-$role.service"
  [ -f "$unit" ] || fail "$role: no unit"
  # Every binary and flag file the unit names is installed.
  for path in $(grep -o '/usr/local/bin/[a-z-]*\|/etc/fedge/[a-z.-]*' "$unit" | sort -u); do
    [ -e "$root$path" ] || fail "$role: the unit needs $path, which is not installed"
  done
done
[ -x "$work/root-coordinator/usr/local/bin/fedge-status" ] || fail "no fedge-status"
[ -x "$work/root-coordinator/usr/local/bin/fedge-model-tool" ] || fail "no fedge-model-tool"

# A second install keeps the operator's flags.
echo "--min_agents=42" >> "$work/root-coordinator/etc/fedge/coordinator.flags"
DESTDIR=$work/root-coordinator FEDGE_BIN_DIR=$work/bin deploy/install.sh coordinator 2> "$work/again.log"
grep -q -- "--min_agents=42" "$work/root-coordinator/etc/fedge/coordinator.flags" || fail "edited flags overwritten"
grep -q "kept the existing" "$work/again.log" || fail "no word about the kept flags"
[ -x "$work/root-relay/usr/local/bin/fedge-relay" ] || fail "no fedge-relay"
[ -f "$work/root-relay/etc/fedge/relay.flags" ] || fail "no relay.flags"
echo "PASS: install.sh stages the three roles"
