#!/usr/bin/env bash
# The one provisioning script: what a machine needs to build and test minirun.
# Every place that sets a machine up calls this, so they cannot drift apart:
#   scripts/setup.sh     (the README's set-up, and through it the Vagrantfile's VM)
#   scripts/vm/image.sh  (the Debian 12 qemu image that CI tests kernel 6.1 in)
#
#   bash scripts/provision.sh packages               Debian packages (apt), as root
#   bash scripts/provision.sh python VENV PYPROJECT  VENV (made if missing) with the Python
#                                                    dependencies PYPROJECT lists, test extras
#                                                    included, but not minirun itself
set -euo pipefail

# busybox-static: the base layer of every fixture image. libcap-dev, gcc and
# python3-dev: python-prctl compiles against libcap. attr: getfattr for humans.
# docker-registry, skopeo, apache2-utils (htpasswd) and openssl: the registry
# tests' reference server, peer client, basic-auth file and token signing.
# podman (with runc as its runtime), skopeo and umoci: the interop tests' peers
# for save and load (tests/integration/test_interop.py).
# vagrant: `vagrant validate` of the Vagrantfile (tests/integration/test_vagrant.py).
# crun: the second runtime benchmarks/start.py compares start latency with.
PACKAGES=(busybox-static libcap-dev gcc libc6-dev python3-dev python3-venv attr make iproute2
          docker-registry skopeo apache2-utils openssl podman conmon containerd runc crun umoci vagrant)

install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "provision: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  # The package starts a registry service on :5000; the tests start their own on
  # loopback, so stop the one we just installed rather than leave it listening.
  # (In a chroot there is no running systemd, and the image build disables it.)
  if [[ " ${missing[*]} " == *" docker-registry "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
}

# The requirement strings of [project] dependencies and the `test` extra, one a line.
# tomllib is in every Python minirun supports (requires-python >= 3.11).
python_requirements() {
  "$1" - "$2" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
for requirement in project.get("dependencies", []) + project.get("optional-dependencies", {}).get("test", []):
    print(requirement)
EOF
}

# The distribution's own python3 when it is new enough, else the first on PATH (pyenv's,
# say). Debian's is built with PGO and LTO and links libpython statically; a build with
# --enable-shared (pyenv's) spends ~2 ms more on every start, and `minirun run` is a
# cold start each time (here `python -I -S -c pass` takes ~7 ms against ~10 ms).
# PYTHON=... picks another.
default_python() {
  if /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo /usr/bin/python3
  else
    echo python3
  fi
}

install_python() {
  local venv=$1 pyproject=$2 python=${PYTHON:-$(default_python)}
  [ -f "$pyproject" ] || { echo "provision: no such file: $pyproject" >&2; exit 2; }
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  local requirements
  mapfile -t requirements < <(python_requirements "$venv/bin/python" "$pyproject")
  "$venv/bin/pip" install -q --disable-pip-version-check "${requirements[@]}"
}

if [ "$(id -u)" != 0 ]; then
  echo "provision.sh: run as root (it installs packages): sudo bash $0 $*" >&2
  exit 3
fi
case "${1:-}" in
  packages) install_packages ;;
  python)
    [ $# -eq 3 ] || { echo "usage: provision.sh python VENV PYPROJECT" >&2; exit 2; }
    install_python "$2" "$3" ;;
  *) echo "usage: provision.sh packages | python VENV PYPROJECT" >&2; exit 2 ;;
esac
