#!/usr/bin/env bash
# Build symphonyd_<version>_all.deb from the working tree into OUTDIR (default: dist/).
# Builds in a scratch copy with Debian's own interpreter on a clean PATH, so neither a
# developer's venv nor the tree's build artefacts leak into the package.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
outdir=$(realpath -m "${1:-$root/dist}")
scratch=$(mktemp -d /tmp/symphonyd-deb.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/src" "$outdir"
tar -C "$root" --exclude=.venv --exclude=.git --exclude=dist --exclude='*.pyc' \
    --exclude=__pycache__ --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.pytest_cache \
    --exclude=.hypothesis -cf - . | tar -C "$scratch/src" -xf -
(cd "$scratch/src" && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$scratch" LANG=C.UTF-8 \
    dpkg-buildpackage -b -us -uc >"$scratch/build.log" 2>&1) || { tail -40 "$scratch/build.log"; exit 1; }
cp "$scratch"/symphonyd_*_all.deb "$outdir/"
ls "$outdir"/symphonyd_*_all.deb
