#!/usr/bin/env bash
# Gets llama.cpp's source without network access to GitHub: the npm package
# node-llama-cpp@3.22.1 ships a git bundle of llama.cpp (package/llama/
# gitRelease.bundle, one squashed commit de3ff815ea7d of 2026-09-28).
#
#   scripts/get-llama-cpp.sh DEST
#
# `npm pack` downloads the package's .tgz into a temporary directory (npm's
# cache aside, nothing is installed), only the bundle is extracted, and
# `git clone` makes DEST from it; the commit id is then checked. With
# NODE_LLAMA_CPP_TGZ=path/to/node-llama-cpp-3.22.1.tgz an already
# downloaded package is used instead of npm. A DEST that already holds the
# right commit is left as it is.
#
# System changes: when npm, git or tar are missing it runs
# scripts/install-deps.sh npm git, which apt-get installs them (through
# sudo when not root) with the project's usual build packages. npm writes
# its cache under ~/.npm. Nothing else outside DEST is kept.
set -euo pipefail

PACKAGE=node-llama-cpp@3.22.1
COMMIT=de3ff815ea7d559ee917f063901b8986f038abc6

if [ $# -ne 1 ]; then
    echo "usage: $0 DEST" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
dest=$1

if [ -d "$dest/.git" ] && [ "$(git -C "$dest" rev-parse HEAD 2>/dev/null)" = "$COMMIT" ]; then
    echo "get-llama-cpp: $dest already holds llama.cpp $COMMIT"
    exit 0
fi
if [ -e "$dest" ] && [ -n "$(ls -A "$dest" 2>/dev/null)" ]; then
    echo "get-llama-cpp: $dest exists and is not llama.cpp $COMMIT; remove it or pick another DEST" >&2
    exit 1
fi

need=()
command -v git >/dev/null || need+=(git)
command -v tar >/dev/null || need+=(tar)
[ -n "${NODE_LLAMA_CPP_TGZ:-}" ] || command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
    echo "get-llama-cpp: installing ${need[*]} (scripts/install-deps.sh)"
    "$here/install-deps.sh" "${need[@]}"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -n "${NODE_LLAMA_CPP_TGZ:-}" ]; then
    tgz=$NODE_LLAMA_CPP_TGZ
    echo "get-llama-cpp: using $tgz"
else
    echo "get-llama-cpp: npm pack $PACKAGE (into $tmp)"
    (cd "$tmp" && npm pack "$PACKAGE" --silent >/dev/null)
    tgz=$(ls "$tmp"/node-llama-cpp-*.tgz)
fi
tar -xzf "$tgz" -C "$tmp" package/llama/gitRelease.bundle
echo "get-llama-cpp: extracted package/llama/gitRelease.bundle ($(du -h "$tmp/package/llama/gitRelease.bundle" | cut -f1))"
git -c advice.detachedHead=false clone --quiet "$tmp/package/llama/gitRelease.bundle" "$dest"
head=$(git -C "$dest" rev-parse HEAD)
if [ "$head" != "$COMMIT" ]; then
    echo "get-llama-cpp: $dest is at $head, expected $COMMIT" >&2
    exit 1
fi
echo "get-llama-cpp: cloned llama.cpp $COMMIT ($(git -C "$dest" log -1 --format=%cs)) into $dest"
