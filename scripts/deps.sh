#!/usr/bin/env bash
# Install the Debian 12 packages qkit needs, only those that are missing.
#   scripts/deps.sh build   compiler, meson/ninja and the libraries qkit links with
#   scripts/deps.sh test    build + QEMU 7.2's qemu-img/qemu-io (the reference), clang
#                           with libFuzzer, python3
#   scripts/deps.sh bench   test (the benchmarks compare against qemu-img too)
# Runs `apt-get update` once, and only when something has to be installed.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

mode=${1:-build}
build_pkgs=(make gcc meson ninja-build pkg-config zlib1g-dev libzstd-dev libjansson-dev
            liburing-dev libcmocka-dev libgnutls28-dev)
test_pkgs=(qemu-utils nbdkit clang libclang-rt-14-dev python3 coreutils qemu-guest-agent
           libnbd-bin python3-libnbd gnutls-bin fio)

case $mode in
build) want=("${build_pkgs[@]}") ;;
test|bench) want=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
*) echo "usage: $0 [build|test|bench]" >&2; exit 2 ;;
esac

# A package counts as present only when dpkg says it is fully installed.
missing=()
for p in "${want[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    [[ $status == ii* ]] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps.sh: installing ${missing[*]}"
SUDO=
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "deps.sh: need root (or sudo) to install" >&2; exit 1; }
    SUDO=sudo
fi
$SUDO apt-get update -q </dev/null
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
