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

# busybox-static: the base layer of every fixture image. libcap-dev, gcc and
# python3-dev: python-prctl compiles against libcap. attr: getfattr for humans.
# docker-registry, skopeo, apache2-utils (htpasswd) and openssl: the registry
# tests' reference server, peer client, basic-auth file and token signing.
# podman (with runc as its runtime), skopeo and umoci: the interop tests' peers
# for save and load (tests/integration/test_interop.py).
# vagrant: `vagrant validate` of the Vagrantfile (tests/integration/test_vagrant.py).
# crun: the second runtime benchmarks/start.py compares start latency with.
packages=(busybox-static libcap-dev gcc libc6-dev python3-dev python3-venv attr make iproute2
          docker-registry skopeo apache2-utils openssl podman runc crun umoci vagrant)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  # The package starts a registry service on :5000; the tests start their own on
  # loopback, so stop the one we just installed rather than leave it listening.
  if [[ " ${missing[*]} " == *" docker-registry "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
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
