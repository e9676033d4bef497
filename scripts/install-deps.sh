#!/usr/bin/env bash
# Installs what building, testing and the examples need on Debian/Ubuntu.
# Skips apt entirely when everything is already there.
set -euo pipefail

packages=(gcc g++ meson ninja-build pkg-config libopenblas-dev libcmocka-dev gnuplot-nox doxygen python3 "$@")

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

as_root=()
[ "$(id -u)" -ne 0 ] && as_root=(sudo)
echo "installing: ${missing[*]}" >&2
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
