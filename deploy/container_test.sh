#!/usr/bin/env bash
# Checks the container recipe against the binaries it ships: every shared
# library a binary links directly must come from a package the runtime
# stage installs (or from the base image), every runtime package must exist
# under that name in this Debian release, and the build stage must build
# and copy every binary.
#   container_test.sh CONTAINERFILE BINARY...
set -euo pipefail
containerfile=$1; shift
fail() { echo "FAIL: $*"; exit 1; }

packages=$(sed -n 's/^ARG RUNTIME_PACKAGES="\(.*\)"$/\1/p' "$containerfile")
[ -n "$packages" ] || fail "no ARG RUNTIME_PACKAGES line in $containerfile"
# What debian:bookworm-slim already holds.
base="libc6 libgcc-s1 libstdc++6 zlib1g"

for p in $packages; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' \
    || apt-cache show "$p" >/dev/null 2>&1 \
    || fail "runtime package '$p' is not a package of this Debian release"
done

owner() {  # library path -> Debian package (usrmerge: /usr/lib and /lib)
  local real; real=$(readlink -f "$1")
  local p
  p=$(dpkg -S "$real" 2>/dev/null | sed -n "1s/:.*//p" || true)
  [ -z "$p" ] && p=$(dpkg -S "${real#/usr}" 2>/dev/null | sed -n "1s/:.*//p" || true)
  echo "${p:-?}"
}

for bin in "$@"; do
  name=$(basename "$bin")
  grep -q "bazel-bin/.*/$name " "$containerfile" || fail "$name is not copied into the image"
  for lib in $(readelf -d "$bin" | awk '/NEEDED/ { gsub(/[][]/, "", $5); print $5 }'); do
    path=$(ldconfig -p | awk -v l="$lib" '$1 == l && !found { print $NF; found = 1 }')
    [ -n "$path" ] || fail "$name needs $lib, which is not installed here"
    pkg=$(owner "$path")
    case " $packages $base " in
      *" $pkg "*) ;;
      *) fail "$name needs $lib from package '$pkg', which the runtime stage does not install" ;;
    esac
  done
done

# The runtime stage runs unprivileged and exposes the two ports.
grep -q '^USER fedge' "$containerfile" || fail "the image does not drop to the fedge user"
grep -q '^EXPOSE 7070 9464' "$containerfile" || fail "the image does not expose 7070 and 9464"
echo "PASS: $# binaries, runtime packages: $packages"
