#!/usr/bin/env bash
# minirun on our users' kernel: a Debian 12 VM (kernel 6.1, cgroup v2 set up by
# systemd) under qemu, built here and booted here. As root:
#
#   bash scripts/vm.sh tools                  install the host tools a build needs (qemu, debootstrap)
#   bash scripts/vm.sh build                  make the image (cached; a no-op when current)
#   bash scripts/vm.sh test [PYTEST ARGS]     boot it, run pytest (default: the whole suite)
#                                             as root in a copy of this checkout, power off
#   bash scripts/vm.sh run -- CMD [ARGS...]   boot it, run one command there the same way
#   bash scripts/vm.sh clean                  remove every cached image
#
# test and run build the image first if needed, print which accelerator runs the
# VM, stream the job's stdout and stderr, and exit with the job's exit status.
# Their own failures exit 124 (timed out; the VM was killed) or 125 (the VM could
# not boot or did not report a status: one line says why), 130/143 on Ctrl-C/TERM.
# No qemu process outlives this script, however it ends.
#
# Settings (environment):
#   MINIRUN_VM_CACHE    where images live (default /var/cache/minirun-vm; outside the checkout)
#   MINIRUN_VM_TIMEOUT  seconds before the VM is killed (default 7200 for test, 600 for run)
#   MINIRUN_VM_ACCEL    kvm or tcg to skip the KVM probe
#   MINIRUN_VM_MEMORY   guest memory in MiB (default 4096); MINIRUN_VM_CPUS (default 2)
#   MINIRUN_VM_KEEP     non-empty: keep the run's temp dir (the VM's console log) for a look
#   MINIRUN_VM_SHARE    a host directory the guest sees read-only at /run/minirun-vm/share
#                       (big inputs, such as a built runtime-tools suite, without copying them in)
#   MINIRUN_VM_APPEND   more words for the guest kernel's command line, e.g.
#                       systemd.unified_cgroup_hierarchy=0 to boot with cgroup v1
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
HERE=$REPO/scripts/vm
CACHE=${MINIRUN_VM_CACHE:-/var/cache/minirun-vm}
KEEP_IMAGES=3                            # older images are removed after a build
BOOT_DEADLINE_TCG=240                    # seconds until the job must have started
BOOT_DEADLINE_KVM=60
KVM_PROBE_SECONDS=6

# fd 3 is the real stderr, for messages from inside blocks whose stderr is silenced
exec 3>&2
die() { echo "vm: $1" >&3; exit "${2:-125}"; }

# ---------------------------------------------------------------- cleanup, whatever happens
# Every process this script starts in the background is listed here, and killed on
# exit. qemu also gets SIGKILL from the kernel if this shell dies without running
# the trap (setpriv --pdeathsig), so not even `kill -9` of this script strands a VM.
CHILDREN=()
BUILD=""                                 # the image build's process group, while it runs
TMP=""
cleanup() {
  local rc=$? pid tries
  if [ -n "$BUILD" ]; then
    # the whole build (debootstrap, chroot apt, pip); image.sh's own trap then unmounts
    kill -TERM -- "-$BUILD" 2>/dev/null || true
    for tries in $(seq 300); do kill -0 "$BUILD" 2>/dev/null || break; sleep 0.1; done
  fi
  for pid in "${CHILDREN[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${CHILDREN[@]}"; do
    for tries in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  # --one-file-system: never into a mount a killed build may have left behind
  if [ -n "$TMP" ] && [ -n "${MINIRUN_VM_KEEP:-}" ] && [ -e "$TMP/console.log" ]; then
    echo "vm: kept $TMP (console.log: the VM's console)" >&2
  elif [ -n "$TMP" ]; then
    rm -rf --one-file-system "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "vm: interrupted; stopping" >&3; exit 130' INT
trap 'echo "vm: terminated; stopping" >&3; exit 143' TERM HUP

need_root() {
  [ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot and the VM's disk need it): sudo bash $0 $*" 3
}

# Host tools, from Debian's archive when missing.
need_tools() {
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
  command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "vm: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# ---------------------------------------------------------------- the image
# The cache key: everything that decides what goes into the image. The Python
# requirements count, not the rest of pyproject.toml (pytest markers, say).
image_key() {
  {
    cat "$HERE/image.sh" "$REPO/scripts/provision.sh"
    python3 - "$REPO/pyproject.toml" <<'EOF'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
print(sorted(project.get("dependencies", [])), sorted(project.get("optional-dependencies", {}).items()))
EOF
  } | sha256sum | cut -c1-16
}

cmd_build() {
  need_root build
  need_tools
  local key dir started
  key=$(image_key)
  dir=$CACHE/$key
  if [ -f "$dir/disk.img" ]; then
    touch "$dir"
    echo "vm: image $dir is current"
    return 0
  fi
  mkdir -p "$CACHE"
  # One build at a time; the loser of a race finds the winner's image.
  exec 9>"$CACHE/.lock"
  flock -n 9 || { echo "vm: waiting for another build to finish"; flock 9; }
  if [ -f "$dir/disk.img" ]; then echo "vm: image $dir is current"; exec 9>&-; return 0; fi
  remove_stale_builds
  TMP=$(mktemp -d "$CACHE/.build-$key.XXXXXX")
  started=$SECONDS
  echo "vm: building the image $dir (debootstrap, apt and pip; several minutes)"
  # In a session of its own, so that one signal stops all of it, and in the background,
  # so that a signal runs the trap at once. It keeps the lock (fd 9): even a build
  # orphaned by a `kill -9` of this script holds off the next until it ends.
  setsid bash "$HERE/image.sh" "$TMP" &
  BUILD=$!
  local rc=0
  wait "$BUILD" || rc=$?
  BUILD=""
  [ "$rc" -eq 0 ] || die "building the image failed (see above)" 1
  rm -f "$TMP"/*.log
  # The rename is the commit: a build that stops earlier leaves only a .build-* dir,
  # which no one takes for an image and the next build removes.
  mv -T "$TMP" "$dir"
  TMP=""
  echo "vm: built $dir in $((SECONDS - started)) s"
  prune_images
  exec 9>&-
}

# Left by a build that was killed outright (the lock says none is running now):
# unmount whatever it left mounted, then remove it without crossing filesystems.
remove_stale_builds() {
  local stale mount
  for stale in "$CACHE"/.build-*; do
    [ -d "$stale" ] || continue
    findmnt -rn -o TARGET | { grep -F "$stale/" || true; } | sort -r | while read -r mount; do
      umount -l "$mount" || true
    done
    rm -rf --one-file-system "$stale"
  done
}

prune_images() {
  local old
  ls -1dt "$CACHE"/*/ 2>/dev/null | tail -n +$((KEEP_IMAGES + 1)) | while read -r old; do
    echo "vm: removing the old image $old"
    rm -rf --one-file-system "$old"
  done
}

cmd_clean() {
  need_root clean
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  flock 9
  remove_stale_builds
  rm -rf --one-file-system "${CACHE:?}"/*/
  echo "vm: removed the images in $CACHE"
}

# ---------------------------------------------------------------- booting
# KVM is tried first with a short probe: the kernel boots without a root disk,
# panics at "VFS: Unable to mount root fs" and, with panic=-1 and -no-reboot,
# qemu exits. Where KVM guests hang (this project's CI machine: right after the
# firmware) the probe is killed after a few seconds and TCG runs the VM instead.
pick_accel() {
  local image=$1 log=$TMP/kvm-probe.log pid waited
  case ${MINIRUN_VM_ACCEL:-} in
    kvm|tcg) ACCEL=$MINIRUN_VM_ACCEL; ACCEL_WHY="MINIRUN_VM_ACCEL"; return ;;
    "") ;;
    *) die "MINIRUN_VM_ACCEL must be kvm or tcg, not '$MINIRUN_VM_ACCEL'" 2 ;;
  esac
  ACCEL=tcg
  if ! { [ -r /dev/kvm ] && [ -w /dev/kvm ]; }; then ACCEL_WHY="no usable /dev/kvm"; return; fi
  start_qemu "$log" -accel kvm -cpu host -m 256 -serial "file:$log" -kernel "$image/vmlinuz" \
    -append "console=ttyS0 panic=-1 loglevel=4"
  pid=$QEMU_PID
  for waited in $(seq $((KVM_PROBE_SECONDS * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
    ACCEL_WHY="a KVM guest did not get through a kernel boot within ${KVM_PROBE_SECONDS} s"
  else
    wait "$pid" 2>/dev/null || true          # reaped here, or bash reports its death on stderr
    if grep -q "Kernel panic" "$log"; then
      ACCEL=kvm; ACCEL_WHY="the KVM probe booted a kernel"
    else
      ACCEL_WHY="the KVM probe failed: $(cat "$log.qemu" "$log" | grep -v '^[[:space:]]*$' | tail -n 1 | sed 's/.*: //' | cut -c1-100)"
    fi
  fi
}

# qemu in the background, with its stderr in $1.qemu, and no stdin (it never reads
# the terminal, so Ctrl-C reaches this script, whose trap stops the VM).
start_qemu() {
  local log=$1; shift
  local deathsig=()
  setpriv --help 2>/dev/null | grep -q -- --pdeathsig && deathsig=(setpriv --pdeathsig KILL --)
  "${deathsig[@]}" qemu-system-x86_64 -nodefaults -display none -no-reboot -nic none "$@" \
    </dev/null >"$log.qemu" 2>&1 &
  QEMU_PID=$!
  CHILDREN+=("$QEMU_PID")
}

# The checkout's files as the guest gets them: tracked and untracked but not ignored,
# as they are in the working tree (so uncommitted edits are tested too).
pack_checkout() {
  local tar=$1
  if git -C "$REPO" -c safe.directory="$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$REPO" -c safe.directory="$REPO" ls-files -z -co --exclude-standard |
      tar -C "$REPO" --null --ignore-failed-read -T - -cf "$tar" 2>/dev/null
  else
    tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./fixtures-out --exclude=./demo-root \
      --exclude=__pycache__ --exclude='*.egg-info' --exclude=.vagrant -cf "$tar" .
  fi
}

# boot MODE TIMEOUT ARGS...: the whole life of one VM; exits with the job's status.
boot() {
  local mode=$1 timeout=$2; shift 2
  if [ -n "${MINIRUN_VM_SHARE:-}" ] && [ ! -d "$MINIRUN_VM_SHARE" ]; then
    die "MINIRUN_VM_SHARE=$MINIRUN_VM_SHARE is not a directory: give the directory the guest should see" 2
  fi
  local image=$CACHE/$(image_key)
  [ -f "$image/disk.img" ] || cmd_build >&2
  TMP=$(mktemp -d /tmp/minirun-vm.XXXXXX)
  local ctl=$TMP/ctl
  mkdir "$ctl"
  cp "$HERE/guest.sh" "$ctl/guest.sh"
  echo "$mode" >"$ctl/mode"
  if [ $# -gt 0 ]; then printf '%s\0' "$@" >"$ctl/argv"; else : >"$ctl/argv"; fi
  [ -t 1 ] && [ -n "${TERM:-}" ] && echo "$TERM" >"$ctl/term"
  pack_checkout "$ctl/src.tar"
  : >"$TMP/stdout"; : >"$TMP/stderr"; : >"$TMP/console.log"
  local share=()
  if [ -n "${MINIRUN_VM_SHARE:-}" ]; then
    local dir; dir=$(cd -P -- "$MINIRUN_VM_SHARE" >/dev/null && pwd -P)
    share=(-virtfs "local,path=${dir//,/,,},mount_tag=minirun-share,security_model=none,readonly=on,id=share")
    : >"$ctl/share"
  fi

  pick_accel "$image" 2>/dev/null          # bash would report the probe's abort there
  local cpu=max extra=(-accel tcg,thread=multi) deadline=$BOOT_DEADLINE_TCG
  [ "$ACCEL" = kvm ] && cpu=host extra=(-accel kvm) deadline=$BOOT_DEADLINE_KVM
  echo "vm: $ACCEL ($ACCEL_WHY); kernel $(cat "$image/kernel-version"), image $image" >&2

  local started=$SECONDS
  start_qemu "$TMP/console.log" "${extra[@]}" -cpu "$cpu" -smp "${MINIRUN_VM_CPUS:-2}" \
    -m "${MINIRUN_VM_MEMORY:-4096}" -serial "file:$TMP/console.log" \
    -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
    -append "console=ttyS0 root=/dev/vda rw quiet fsck.mode=skip panic=-1 ${MINIRUN_VM_APPEND:-}" \
    -drive "file=$image/disk.img,format=raw,if=virtio,snapshot=on" \
    -device virtio-rng-pci \
    -virtfs "local,path=$ctl,mount_tag=minirun-ctl,security_model=none,id=ctl" "${share[@]}" \
    -device virtio-serial-pci,id=ports \
    -chardev "file,id=out,path=$TMP/stdout,append=on" \
    -device virtserialport,bus=ports.0,chardev=out,name=minirun.stdout \
    -chardev "file,id=err,path=$TMP/stderr,append=on" \
    -device virtserialport,bus=ports.0,chardev=err,name=minirun.stderr
  local qemu=$QEMU_PID
  tail -n +1 -f --pid="$qemu" "$TMP/stdout" & CHILDREN+=($!); local tail_out=$!
  tail -n +1 -f --pid="$qemu" "$TMP/stderr" >&2 & CHILDREN+=($!); local tail_err=$!

  local why=""
  {                                      # stderr silenced: bash would report a qemu abort here
    while kill -0 "$qemu"; do
      if [ ! -e "$ctl/started" ] && (( SECONDS - started > deadline )); then
        why="the VM did not boot within $deadline s ($(last_console_line))"; break
      fi
      if (( SECONDS - started > timeout )); then
        why="timed out after $timeout s; killed the VM"; break
      fi
      sleep 0.5 & wait $!                # interruptible: a signal runs the trap at once
    done
    [ -z "$why" ] || kill -KILL "$qemu" || true
    wait "$qemu" || true
    wait "$tail_out" "$tail_err" || true
  } 2>/dev/null
  echo "vm: the VM ran $((SECONDS - started)) s" >&2
  [ -n "$why" ] && { [[ $why == timed* ]] && die "$why" 124; die "$why"; }
  if [ -f "$ctl/status" ]; then
    exit "$(cat "$ctl/status")"
  fi
  local err; err=$(grep -v '^[[:space:]]*$' "$TMP/console.log.qemu" | tail -n 1 | sed 's/^qemu-system-x86_64: //')
  [[ $err == *"terminating on signal"* ]] && die "qemu was stopped from outside ($err)"
  if [ ! -e "$ctl/started" ]; then
    [ -n "$err" ] && die "qemu could not start the VM: $err"
    die "the VM stopped before its job started ($(last_console_line))"
  fi
  die "the VM stopped without reporting the job's status ($(last_console_line))"
}

last_console_line() {
  local line
  line=$(tr -d '\r' <"$TMP/console.log" | grep -v '^[[:space:]]*$' | tail -n 1 | cut -c1-160)
  echo "last console line: ${line:-none}"
}

seconds() {
  [[ $1 =~ ^[1-9][0-9]*$ ]] || die "MINIRUN_VM_TIMEOUT must be a whole number of seconds, not '$1'" 2
  echo "$1"
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

case "${1:-}" in
  tools) [ $# -eq 1 ] || usage; need_root tools; need_tools ;;
  build) [ $# -eq 1 ] || usage; cmd_build ;;
  clean) [ $# -eq 1 ] || usage; cmd_clean ;;
  test)
    shift; need_root test; need_tools
    boot test "$(seconds "${MINIRUN_VM_TIMEOUT:-7200}")" "$@" ;;
  run)
    shift; [ "${1:-}" = -- ] && shift
    [ $# -gt 0 ] || usage
    need_root run; need_tools
    boot run "$(seconds "${MINIRUN_VM_TIMEOUT:-600}")" "$@" ;;
  *) usage ;;
esac
