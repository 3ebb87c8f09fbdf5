#!/bin/bash
# Build an arm64 Debian 12 SD image of edge-agent on an x86 machine, from Debian's own
# packages: mmdebstrap (arm64 steps under qemu-user-static with binfmt) into a tarball,
# then the partitions as plain files (mkfs.fat + mtools, mkfs.ext4 -d) and the disk with
# sfdisk: no loop device, nothing mounted on the host. The same layout as Raspberry Pi OS:
# an MBR, a 256 MiB FAT boot partition at 4 MiB ("bootfs", /boot/firmware), then the
# ext4 root ("rootfs"). The agent is installed by images/install-agent.sh, the step the
# pi-gen recipe runs too.
#
#   images/debian/build.sh OUT.img TECH_SSH_PUBKEY_FILE [--cache DIR] [--overlay DIR]
#
# The root file system is built in two layers, each kept in the cache directory (default
# ~/.cache/edge-agent-image) under a key of what it is made from: the base (Debian's
# packages, images/debian/base.sh: the slow part), and the agent installed on a copy of
# it (install-agent.sh: what a change to the agent costs). The disk is assembled anew
# each time (with --overlay DIR's files added to the root: the image test's hooks). OUT.img's kernel and initrd are written beside it
# (OUT.vmlinuz, OUT.initrd) for qemu-system-aarch64 -kernel/-initrd.
set -euo pipefail

usage() {
	echo "usage: $0 OUT.img TECH_SSH_PUBKEY_FILE [--cache DIR] [--overlay DIR]" >&2
	exit 64
}
[ $# -ge 2 ] || usage
out=$1
pubkey_file=$2
shift 2
cache=${XDG_CACHE_HOME:-$HOME/.cache}/edge-agent-image
overlay=""
while [ $# -gt 0 ]; do
	case "$1" in
	--cache) cache=$2; shift 2 ;;
	--overlay) overlay=$2; shift 2 ;;
	*) usage ;;
	esac
done
here=$(cd "$(dirname "$0")" && pwd)
images=$(cd "$here/.." && pwd)
repo=$(cd "$images/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "$0: run as root (the root file system's owners and modes)" >&2; exit 77; }

DISK_ID=0xed6e0019
BOOT_START=8192 BOOT_SECTORS=524288 ROOT_START=532480 # 256 MiB FAT32 at 4 MiB, as Pi OS

# arm64 programs run under qemu-user: binfmt_misc with qemu-aarch64 (fix-binary mode, so
# it works inside the chroot). The package registers it where systemd-binfmt runs; in a
# container it may not have: register it here.
if ! arch-test arm64 >/dev/null 2>&1; then
	[ -f /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
	[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || cat /usr/lib/binfmt.d/qemu-aarch64.conf >/proc/sys/fs/binfmt_misc/register
	arch-test arm64 >/dev/null || { echo "$0: arm64 programs do not run here (qemu-user-static, binfmt_misc)" >&2; exit 69; }
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/edge-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache"

# Layer 1, the base: Debian's packages and the system's settings (images/debian/base.sh),
# keyed on that recipe and the package list only: the slow part, built once.
base_key=$( (
	cat "$here/base.sh" "$here/packages" "$here/initramfs-modules" "$here"/*.cfg "$here"/*.network
	echo "$DISK_ID"
) | sha256sum | cut -c1-16)
base="$cache/base-$base_key.tar"
if [ ! -s "$base" ]; then
	echo "$0: building the base layer ($base)" >&2
	start=$(date +%s)
	"$here/base.sh" "$work/base.tar" "$DISK_ID"
	mv "$work/base.tar" "$base"
	echo "$0: base layer built in $(($(date +%s) - start)) s" >&2
fi

# Layer 2, the agent: install-agent.sh run in a copy of the base, keyed on the base and on
# what images/stage.sh staged (the agent's committed source, the units, the key).
"$images/stage.sh" "$work/stage" tech "$pubkey_file"
# This machine's way to PyPI may need its own CA (pip's PIP_CERT): the install step uses it.
pip_ca=${EDGE_AGENT_PIP_CERT:-${PIP_CERT:-}}
if [ -n "$pip_ca" ] && [ -r "$pip_ca" ]; then cp "$pip_ca" "$work/stage/pip-ca.pem"; fi
agent_key=$( (
	cd "$work/stage" && sha256sum -- * | grep -v ' edge-agent.tar.gz$\| pip-ca.pem$\| README.md$\| images-README.md$'
	git -C "$repo" rev-parse HEAD:edge_agent HEAD:drivers HEAD:ext HEAD:setup.py HEAD:pyproject.toml
	echo "$base_key"
) | sha256sum | cut -c1-16)
rootfs="$cache/agent-$agent_key.tar"
mkdir "$work/root"
if [ -s "$rootfs" ]; then
	tar -C "$work/root" --numeric-owner --xattrs --xattrs-include='*' -xpf "$rootfs"
else
	echo "$0: installing the agent on the base layer ($rootfs)" >&2
	start=$(date +%s)
	tar -C "$work/root" --numeric-owner --xattrs --xattrs-include='*' -xpf "$base"
	mkdir -p "$work/root/opt/edge-agent"
	cp -r "$work/stage" "$work/root/opt/edge-agent/src"
	# pip needs the name server for the time of the install; the base's own is put back
	if [ -e "$work/root/etc/resolv.conf" ] || [ -L "$work/root/etc/resolv.conf" ]; then
		mv "$work/root/etc/resolv.conf" "$work/resolv.conf.base"
	fi
	cp -L /etc/resolv.conf "$work/root/etc/resolv.conf"
	# A chroot with mounts of its own (a new namespace): /proc and a minimal /dev are mounted only
	# there and go with it; nothing is mounted on the host.
	# shellcheck disable=SC2016
	unshare --mount --propagation private --fork -- /bin/sh -euc '
		r=$1
		mount -t proc proc "$r/proc"
		mount -t tmpfs -o mode=755,size=1m tmpfs "$r/dev"
		mknod -m 666 "$r/dev/null" c 1 3; mknod -m 666 "$r/dev/zero" c 1 5
		mknod -m 666 "$r/dev/full" c 1 7; mknod -m 666 "$r/dev/random" c 1 8
		mknod -m 666 "$r/dev/urandom" c 1 9; mknod -m 666 "$r/dev/tty" c 5 0
		mkdir "$r/dev/shm" "$r/dev/pts"
		mount -t tmpfs -o mode=1777 tmpfs "$r/tmp"
		exec chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
			/opt/edge-agent/src/install-agent.sh /opt/edge-agent/src' sh "$work/root"
	rm -f "$work/root/etc/resolv.conf"
	if [ -e "$work/resolv.conf.base" ] || [ -L "$work/resolv.conf.base" ]; then
		mv "$work/resolv.conf.base" "$work/root/etc/resolv.conf"
	fi
	rm -f "$work/root/etc/machine-id" && touch "$work/root/etc/machine-id"
	tar -C "$work/root" --numeric-owner --xattrs --xattrs-include='*' -cpf "$work/agent.tar" .
	mv "$work/agent.tar" "$rootfs"
	# an agent layer is cheap to make again: keep the newest three
	find "$cache" -maxdepth 1 -name 'agent-*.tar' -printf '%T@ %p\n' | sort -rn | tail -n +4 |
		cut -d' ' -f2- | xargs -r rm -f --
	echo "$0: agent layer installed in $(($(date +%s) - start)) s" >&2
fi

# The disk: the root file system with the overlay, the boot partition, the table.
# the docs are not in the cache key: the current ones, whatever the cached root has
install -m 644 "$work/stage/README.md" "$work/root/usr/share/doc/edge-agent/README.md"
install -m 644 "$work/stage/images-README.md" "$work/root/usr/share/doc/edge-agent/images/README.md"
if [ -n "$overlay" ]; then
	cp -a "$overlay/." "$work/root/"
fi
kernels=("$work"/root/boot/vmlinuz-*) initrds=("$work"/root/boot/initrd.img-*)
cp "${kernels[-1]}" "${out%.img}.vmlinuz"
cp "${initrds[-1]}" "${out%.img}.initrd"
used_kib=$(du -sk "$work/root" | cut -f1)
root_mib=$(((used_kib / 1024) * 13 / 10 + 512)) # room for the store and the journal
mkfs.ext4 -q -F -L rootfs -d "$work/root" -E root_owner=0:0 "$work/root.ext4" "${root_mib}M"

mkfs.fat -F 32 -s 2 -n bootfs -C "$work/boot.fat" $((BOOT_SECTORS / 2)) >/dev/null
printf 'edge-agent Debian arm64 test image: the boot partition, as a Pi card has it.\n' >"$work/README.txt"
MTOOLS_SKIP_CHECK=1 mcopy -i "$work/boot.fat" "$work/README.txt" ::/README.txt

root_sectors=$((root_mib * 2048))
rm -f "$out"
truncate -s $(((ROOT_START + root_sectors) * 512)) "$out"
sfdisk -q "$out" <<TABLE
label: dos
label-id: $DISK_ID
start=$BOOT_START, size=$BOOT_SECTORS, type=c
start=$ROOT_START, size=$root_sectors, type=83
TABLE
dd if="$work/boot.fat" of="$out" bs=1M seek=$((BOOT_START / 2048)) conv=notrunc,sparse status=none
dd if="$work/root.ext4" of="$out" bs=1M seek=$((ROOT_START / 2048)) conv=notrunc,sparse status=none
echo "$out: $(du -h --apparent-size "$out" | cut -f1) ($(du -h "$out" | cut -f1) on disk), root file system $rootfs"
