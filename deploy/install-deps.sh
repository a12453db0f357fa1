#!/usr/bin/env bash
# Installs the Debian packages ferry needs to build, test and demo.
# Safe to run again: it only installs what is missing.
#   deploy/install-deps.sh           build + test dependencies
#   deploy/install-deps.sh --chaos   also docker.io, debootstrap, nftables, iproute2
set -euo pipefail

packages=(build-essential cmake pkg-config libzmq3-dev libczmq-dev libmsgpack-dev
          libsodium-dev libssl-dev libcmocka-dev valgrind clang python3 iproute2)
if [ "${1:-}" = "--chaos" ]; then
    packages+=(docker.io debootstrap nftables iproute2)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists once if they are empty or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
    $SUDO apt-get update -q
fi
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
