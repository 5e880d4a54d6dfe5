#!/usr/bin/env bash
# Builds the Debian 12 VM image that scripts/vm.sh boots: called by `vm.sh build`
# with an empty directory, which it fills with disk.img, vmlinuz and initrd.img.
# vm.sh hashes this file (with provision.sh and the Python requirements) into the
# image's cache key, so any change here makes a new image.
#
#   bash scripts/vm/image.sh OUTDIR
#
# What goes in: Debian bookworm (debootstrap minbase) with systemd as init, udev,
# linux-image-amd64 (6.1), every package scripts/provision.sh installs, and a
# virtualenv /opt/minirun-venv with the project's Python dependencies. minirun
# itself is not in the image: each boot copies in the checkout and installs it.
#
# The root filesystem is assembled on a tmpfs (no disk churn on the host, and
# nothing to delete file by file afterwards), then written out by mkfs.ext4 -d.
# Every mount this script makes is undone on exit, however it exits.
set -euo pipefail

OUT=${1:?usage: image.sh OUTDIR}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
MIRROR=${MINIRUN_VM_MIRROR:-http://deb.debian.org/debian}
SECURITY=${MINIRUN_VM_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
ROOTFS=$OUT/rootfs
DISK_SIZE=12G            # sparse: only what is written takes space; the suite needs room in /tmp

# ---------------------------------------------------------------- cleanup
# Whatever still runs inside the chroot when the build stops (apt runs dpkg in a
# session of its own, so a signal to our process group misses it) is killed first,
# so that nothing goes on writing into a root that is being unmounted.
kill_chroot_processes() {
  local tries p root found
  for tries in 1 2 3 4 5 6 7 8 9 10; do
    found=0
    for p in /proc/[0-9]*; do
      root=$(readlink "$p/root" 2>/dev/null) || continue
      [[ $root == "$ROOTFS" || $root == "$ROOTFS"/* ]] || continue
      kill -KILL "${p#/proc/}" 2>/dev/null && found=1
    done
    [ "$found" -eq 0 ] && return 0
    sleep 0.2
  done
}

cleanup() {
  local rc=$? m
  kill_chroot_processes
  # innermost first: /dev/pts before /dev, everything before the tmpfs itself
  for m in dev/pts dev sys proc ""; do
    if mountpoint -q "$ROOTFS/$m" 2>/dev/null; then umount -l "$ROOTFS/$m" || true; fi
  done
  rmdir "$ROOTFS" 2>/dev/null || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

in_root() { chroot "$ROOTFS" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
              DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"; }

mkdir -p "$ROOTFS"
mount -t tmpfs -o size=10g,mode=0755 minirun-vm-build "$ROOTFS"

# ---------------------------------------------------------------- base system
echo "image: debootstrap bookworm (minbase) from $MIRROR"
debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >"$OUT/debootstrap.log" 2>&1 || {
  echo "image: debootstrap failed; the end of its log:" >&2; tail -n 15 "$OUT/debootstrap.log" >&2; exit 1; }

mount -t proc proc "$ROOTFS/proc"
mount -t sysfs sysfs "$ROOTFS/sys"
mount --bind /dev "$ROOTFS/dev"
mount --bind /dev/pts "$ROOTFS/dev/pts"
# No service starts inside the chroot (docker-registry's postinst would try).
printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"
chmod 755 "$ROOTFS/usr/sbin/policy-rc.d"
# pip in the chroot resolves names and trusts TLS as the host does (the host's CA
# bundle may hold a proxy's CA); both are removed again below.
cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
mkdir -p "$ROOTFS/tmp/provision"
cp -L "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$ROOTFS/tmp/provision/ca.crt"

cat >"$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY bookworm-security main
EOF
echo "image: apt-get install systemd-sysv udev linux-image-amd64"
in_root apt-get update -q >/dev/null
in_root apt-get install -y -q --no-install-recommends \
  systemd-sysv udev kmod linux-image-amd64 ca-certificates python3 python3-venv >"$OUT/apt.log" 2>&1 || {
  echo "image: apt-get install failed; the end of its log:" >&2; tail -n 15 "$OUT/apt.log" >&2; exit 1; }

# ---------------------------------------------------------------- the project's needs
cp "$REPO/scripts/provision.sh" "$REPO/pyproject.toml" "$ROOTFS/tmp/provision/"
echo "image: scripts/provision.sh packages"
in_root bash /tmp/provision/provision.sh packages
echo "image: scripts/provision.sh python /opt/minirun-venv"
in_root env PIP_CERT=/tmp/provision/ca.crt ${PIP_INDEX_URL:+PIP_INDEX_URL=$PIP_INDEX_URL} \
  bash /tmp/provision/provision.sh python /opt/minirun-venv /tmp/provision/pyproject.toml

# ---------------------------------------------------------------- boot configuration
echo minirun-vm >"$ROOTFS/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 minirun-vm\n::1 localhost ip6-localhost ip6-loopback\n' >"$ROOTFS/etc/hosts"
printf '/dev/vda / ext4 rw,relatime 0 1\n' >"$ROOTFS/etc/fstab"
# A fixed machine-id: otherwise every boot of the throw-away disk is a "first boot".
in_root systemd-machine-id-setup >/dev/null 2>&1
# Only what the job needs starts: basic.target (udev, journald, tmpfiles...) and the job.
# No timers (apt-daily and friends would run at boot), no gettys, and none of the
# services the packages enabled (podman's API and restart services cost ~10 s of boot
# under TCG; docker-registry would listen on :5000).
rm -f "$ROOTFS"/etc/systemd/system/{timers,default,multi-user,sockets}.target.wants/*
in_root systemctl mask -q getty@tty1.service serial-getty@ttyS0.service docker-registry.service
cat >"$ROOTFS/etc/systemd/system/minirun-vm.target" <<'EOF'
[Unit]
Description=minirun VM: run the host's job, then power off
Requires=basic.target
After=basic.target
Wants=minirun-vm-job.service
AllowIsolate=yes
EOF
ln -sf minirun-vm.target "$ROOTFS/etc/systemd/system/default.target"
cat >"$ROOTFS/etc/systemd/system/minirun-vm-job.service" <<'EOF'
[Unit]
Description=minirun VM job (scripts/vm.sh on the host)
After=basic.target
# the status is on the host before the job ends, so power off without ceremony
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/minirun-vm-job
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity
TasksMax=infinity
EOF
# The job itself comes from the host at every boot (scripts/vm/guest.sh in the
# control share), so changing it needs no new image. This stub only reaches it.
cat >"$ROOTFS/usr/local/sbin/minirun-vm-job" <<'EOF'
#!/bin/bash
set -u
say() { echo "minirun-vm: $*" >/dev/ttyS0; }
modprobe -a 9p 9pnet_virtio virtio_console || say "modprobe 9p 9pnet_virtio virtio_console failed"
mkdir -p /run/minirun-vm/ctl
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 minirun-ctl /run/minirun-vm/ctl; then
  say "cannot mount the control share (9p tag minirun-ctl)"
  exit 1
fi
exec bash /run/minirun-vm/ctl/guest.sh
EOF
chmod 755 "$ROOTFS/usr/local/sbin/minirun-vm-job"

# ---------------------------------------------------------------- tidy, then the disk
rm -f "$ROOTFS/usr/sbin/policy-rc.d" "$ROOTFS/etc/resolv.conf"
rm -rf "$ROOTFS/tmp/provision" "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
       "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/root/.cache
kernel=$(ls "$ROOTFS"/boot/vmlinuz-* | sort -V | tail -n 1)
version=${kernel##*/vmlinuz-}
cp "$kernel" "$OUT/vmlinuz"
cp "$ROOTFS/boot/initrd.img-$version" "$OUT/initrd.img"
for m in dev/pts dev sys proc; do umount "$ROOTFS/$m"; done
echo "image: mkfs.ext4 -d ($(du -sh "$ROOTFS" | cut -f1) of files, kernel $version)"
mkfs.ext4 -q -F -L minirun-vm -d "$ROOTFS" "$OUT/disk.img" "$DISK_SIZE" >/dev/null
echo "$version" >"$OUT/kernel-version"
umount "$ROOTFS"
