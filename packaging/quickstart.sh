#!/usr/bin/env bash
# Quick start on a fresh Debian 12 or 13 machine, as root: build the .deb and run the whole
# suite on the local-files tracker with a real Codex agent and a scripted demo model.
# Options: --release trixie, --exec CMD..., --stop, --reset (python3 -m devtools.quickstart -h).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
need=(debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools fakeroot
      debootstrap systemd-container)
if ! dpkg -s "${need[@]}" >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v npm >/dev/null || apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
exec /usr/bin/python3 -m devtools.quickstart "$@"
