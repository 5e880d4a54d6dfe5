#!/bin/bash
# Runs inside the VM, as root, at every boot (the image's minirun-vm-job service
# mounts the host's control share and execs this copy of it). It copies the
# checkout in, installs it editable into the image's virtualenv, runs the job
# and leaves the job's exit status in the control share, where scripts/vm.sh
# reads it after the VM has powered off.
#
# The control share (/run/minirun-vm/ctl) holds, from the host:
#   mode     "test" (pytest with the given arguments) or "run" (the command itself)
#   argv     the arguments, each ended by a NUL byte
#   src.tar  the checkout's files (tracked and untracked, not ignored)
# and gets from here: started (the VM booted), status (the job's exit status).
set -u
CTL=/run/minirun-vm/ctl
SRC=/srv/minirun
VENV=/opt/minirun-venv
: >"$CTL/started"

# Progress on the console, for a look at where a slow boot spends its time (MINIRUN_VM_KEEP).
mark() { echo "minirun-vm: $(cut -d' ' -f1 /proc/uptime) s: $*" >/dev/ttyS0; }
mark "job started"

finish() {
  mark "job done: $1"
  echo "$1" >"$CTL/status.tmp" && mv "$CTL/status.tmp" "$CTL/status"
  sync
  exit 0
}

# The job's stdout and stderr go to the host through two virtio serial ports; the
# console (ttyS0) keeps the kernel's and systemd's messages apart from them.
udevadm settle -t 30 || true
for port in stdout stderr; do
  if [ ! -c "/dev/virtio-ports/minirun.$port" ]; then
    echo "minirun-vm: no /dev/virtio-ports/minirun.$port" >/dev/ttyS0
    finish 125
  fi
done
exec >/dev/virtio-ports/minirun.stdout 2>/dev/virtio-ports/minirun.stderr </dev/null

say() { echo "vm: $*" >&2; }
export HOME=/root LANG=C.UTF-8 PATH="$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
[ -f "$CTL/term" ] && TERM=$(cat "$CTL/term") && export TERM

mark "ports ready"
if [ -e "$CTL/share" ]; then          # MINIRUN_VM_SHARE on the host
  mkdir -p /run/minirun-vm/share
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro minirun-share /run/minirun-vm/share ||
    { say "cannot mount the shared directory (9p tag minirun-share)"; finish 125; }
fi
mkdir -p "$SRC"
tar --numeric-owner -xf "$CTL/src.tar" -C "$SRC" || { say "cannot unpack the checkout"; finish 125; }
# Installed editable, so the tests' `python -m minirun` runs the checkout's code: what
# `pip install -e SRC --config-settings editable_mode=compat` leaves (a .pth file with
# the path, and bin/minirun and bin/minirun-oci with their first line pointing at the venv's Python), written
# directly, because pip itself takes ~14 s to start and build under TCG.
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
echo "$SRC" >"$site/__editable__.minirun.pth"
for script in minirun minirun-oci; do
  { echo "#!$VENV/bin/python"; tail -n +2 "$SRC/bin/$script"; } >"$VENV/bin/$script"
  chmod 755 "$VENV/bin/$script"
done
mark "checkout unpacked and installed"
mapfile -d '' argv <"$CTL/argv"
cd "$SRC"
case $(cat "$CTL/mode") in
  test)
    say "$(uname -sr), $(nproc) CPUs, $(stat -fc %T /sys/fs/cgroup) at /sys/fs/cgroup, in cgroup $(cut -d: -f3 /proc/self/cgroup)"
    # -u: the report streams to the host as it is written
    python -u -m pytest -q -p no:cacheprovider "${argv[@]}" ;;
  run) "${argv[@]}" ;;
esac
finish $?
