#!/usr/bin/env bash
# Installs fedge on this machine as a service (run as root from the
# repository): the binaries in /usr/local/bin, the systemd unit(s), the
# fedge user, and example flag files in /etc/fedge (never overwriting ones
# that are there). Then: edit /etc/fedge/*.flags, enrol keys (README.md
# here), and `systemctl enable --now fedge-coordinator` (or fedge-agent).
#
#   deploy/install.sh coordinator        # the coordinator's machine
#   deploy/install.sh agent              # an edge board
#   deploy/install.sh relay              # a relay aggregator's machine
#
# DESTDIR stages the files under another root (packaging, tests);
# FEDGE_BIN_DIR takes binaries already built (on a build machine of the same
# Debian release and architecture) instead of building them here, and
# installs only the runtime libraries: the way to install on small boards.
set -euo pipefail
cd "$(dirname "$0")/.."
role=${1:-}
case "$role" in
  coordinator | agent | relay) ;;
  *) echo "usage: deploy/install.sh coordinator|agent|relay" >&2; exit 2 ;;
esac
dest=${DESTDIR:-}

if [ -z "${FEDGE_BIN_DIR:-}" ]; then
  ./fedge deps >&2
  bazel build -c opt //coordinator:coordinator //coordinator/ops:status //coordinator/ops:model_tool \
    //device_agent:agent //common/transport:keygen //coordinator:relay_main >&2
  bin_dir=$(bazel info -c opt bazel-bin 2>/dev/null)
else
  bin_dir=$FEDGE_BIN_DIR
  # Binaries built elsewhere (same Debian release and architecture) need
  # only the runtime libraries, the ones the container image installs.
  if [ -z "$dest" ]; then
    runtime=$(sed -n 's/^ARG RUNTIME_PACKAGES="\(.*\)"$/\1/p' deploy/container/Containerfile)
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $runtime >&2
  fi
fi
find_bin() {  # target path under bazel-bin, or a plain name in FEDGE_BIN_DIR
  if [ -x "$bin_dir/$1" ]; then echo "$bin_dir/$1"; else echo "$bin_dir/$(basename "$1")"; fi
}

install -d -m 0755 "$dest/usr/local/bin" "$dest/etc/systemd/system" "$dest/usr/lib/sysusers.d" \
  "$dest/usr/local/share/doc/fedge" "$dest/usr/local/share/fedge/flags"
install -d -m 0750 "$dest/etc/fedge"
install -m 0755 "$(find_bin common/transport/keygen)" "$dest/usr/local/bin/fedge-keygen"
if [ "$role" = coordinator ]; then
  install -m 0755 "$(find_bin coordinator/coordinator)" "$dest/usr/local/bin/fedge-coordinator"
  install -m 0755 "$(find_bin coordinator/ops/status)" "$dest/usr/local/bin/fedge-status"
  install -m 0755 "$(find_bin coordinator/ops/model_tool)" "$dest/usr/local/bin/fedge-model-tool"
  install -m 0644 deploy/systemd/fedge-coordinator.service "$dest/etc/systemd/system/"
  examples="coordinator-small.flags coordinator-large.flags"
  live=coordinator.flags
  example=coordinator-small.flags
elif [ "$role" = relay ]; then
  install -m 0755 "$(find_bin coordinator/relay_main)" "$dest/usr/local/bin/fedge-relay"
  install -m 0644 deploy/systemd/fedge-relay.service "$dest/etc/systemd/system/"
  examples=relay.flags
  live=relay.flags
  example=relay.flags
else
  install -m 0755 "$(find_bin device_agent/agent)" "$dest/usr/local/bin/fedge-agent"
  install -m 0644 deploy/systemd/fedge-agent.service "$dest/etc/systemd/system/"
  examples=agent.flags
  live=agent.flags
  example=agent.flags
fi
install -m 0644 deploy/systemd/fedge.sysusers.conf "$dest/usr/lib/sysusers.d/fedge.conf"
install -m 0644 deploy/README.md "$dest/usr/local/share/doc/fedge/README.md"
for f in $examples; do install -m 0644 "deploy/flags/$f" "$dest/usr/local/share/fedge/flags/$f"; done
if [ -e "$dest/etc/fedge/$live" ]; then
  echo "kept the existing /etc/fedge/$live" >&2
else
  install -m 0640 "deploy/flags/$example" "$dest/etc/fedge/$live"
  echo "wrote /etc/fedge/$live from deploy/flags/$example: edit it before starting" >&2
fi
if [ -z "$dest" ]; then
  systemd-sysusers /usr/lib/sysusers.d/fedge.conf
  chgrp fedge /etc/fedge /etc/fedge/"$live"
  systemctl daemon-reload 2>/dev/null || echo "systemd is not running here: reload it before enabling" >&2
fi
echo "installed the fedge $role" >&2
