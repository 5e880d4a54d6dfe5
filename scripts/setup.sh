#!/usr/bin/env bash
# One command from a fresh Debian/Ubuntu machine (as root) to a working minirun:
#   bash scripts/setup.sh          system packages, virtualenv, install, fixtures
#   bash scripts/setup.sh demo     ... then run the demo
#   bash scripts/setup.sh test     ... then run the whole test suite
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run as root (it installs packages and the tests mount overlayfs): sudo bash $0 $*" >&2
  exit 3
fi

# The Debian packages and the Python dependencies: scripts/provision.sh, the one
# list that the Vagrant VM (which runs this script) and the qemu image share.
bash scripts/provision.sh packages
bash scripts/provision.sh python .venv pyproject.toml

# compat mode: a plain path in a .pth file. The default editable finder imports
# pathlib, re and urllib at every interpreter start (~12 ms of each `minirun run`).
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]' --config-settings editable_mode=compat
# setuptools came with the venv (Python 3.11's venv adds it; 3.12's does not) and is only
# for building, which pip does in an isolated environment. Its distutils-precedence.pth
# would run at every interpreter start, ~1 ms of each `minirun run`.
if .venv/bin/pip show -q setuptools >/dev/null 2>&1; then
  .venv/bin/pip uninstall -q -y --disable-pip-version-check setuptools
fi
.venv/bin/python rootfs-fixtures/build.py fixtures-out >/dev/null
echo "setup: minirun $(.venv/bin/minirun --version | cut -d' ' -f2) installed in .venv; fixture images in fixtures-out/"

case "${1:-}" in
  "") ;;
  demo) exec bash scripts/demo.sh ;;
  test) exec .venv/bin/python -m pytest -q -p no:cacheprovider tests ;;
  *) echo "setup.sh: unknown target ${1} (use demo or test)" >&2; exit 2 ;;
esac
