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
# The root file system (the slow part: ~N min here) is kept in the cache directory
# (default ~/.cache/edge-agent-image), under a key of everything it is made from; the
# disk is assembled anew each time (with --overlay DIR's files added to the root: the
# image test's hooks). OUT.img's kernel and initrd are written beside it
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

SUITE=bookworm
MIRROR=${EDGE_AGENT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
DISK_ID=0xed6e0019
BOOT_START=8192 BOOT_SECTORS=524288 ROOT_START=532480 # 256 MiB FAT32 at 4 MiB, as Pi OS
PACKAGES=$(grep -v '^#' "$here/packages" | tr '\n' ',' | sed 's/,,*/,/g; s/^,//; s/,$//')

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

# What the root file system is made from: the agent's committed source, the recipes,
# the units, the technicians' key.
"$images/stage.sh" "$work/stage" tech "$pubkey_file"
# This machine's way to PyPI may need its own CA (pip's PIP_CERT): the install step uses it.
pip_ca=${EDGE_AGENT_PIP_CERT:-${PIP_CERT:-}}
if [ -n "$pip_ca" ] && [ -r "$pip_ca" ]; then cp "$pip_ca" "$work/stage/pip-ca.pem"; fi
key=$( (
	cd "$work/stage" && sha256sum -- * | grep -v ' edge-agent.tar.gz$\| pip-ca.pem$\| README.md$\| images-README.md$'
	git -C "$repo" rev-parse HEAD:edge_agent HEAD:drivers HEAD:ext HEAD:setup.py HEAD:pyproject.toml
	cat "$here/build.sh" "$here/packages" "$here/initramfs-modules" "$here"/*.cfg "$here"/*.network
	echo "$SUITE $DISK_ID"
) | sha256sum | cut -c1-16)
mkdir -p "$cache"
rootfs="$cache/rootfs-$key.tar"

if [ ! -s "$rootfs" ]; then
	echo "$0: building the root file system ($rootfs)" >&2
	start=$(date +%s)
	# The hooks run inside mmdebstrap's own namespaces; $1 is the new root (mmdebstrap's).
	# The initramfs takes only what QEMU's virt machine boots from (initramfs-tools'
	# default, MODULES=most, spends over 20 minutes under qemu-user copying modules).
	# shellcheck disable=SC2016
	mmdebstrap --arch=arm64 --variant=apt --include="$PACKAGES" --dpkgopt=force-unsafe-io \
		--essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"' \
		--essential-hook='echo MODULES=list >"$1/etc/initramfs-tools/conf.d/edge-agent-image.conf"' \
		--essential-hook="cp '$here/initramfs-modules' \"\$1/usr/share/initramfs-tools/modules.d/edge-agent-image\"" \
		--customize-hook='echo edge-node >"$1/etc/hostname"' \
		--customize-hook="printf '%s\n' 'proc /proc proc defaults 0 0' \
			'PARTUUID=${DISK_ID#0x}-01 /boot/firmware vfat defaults 0 2' \
			'PARTUUID=${DISK_ID#0x}-02 / ext4 defaults 0 1' >\"\$1/etc/fstab\"" \
		--customize-hook='mkdir -p "$1/boot/firmware"' \
		--customize-hook="cp '$here/cloud-edge-agent-datasource.cfg' \"\$1/etc/cloud/cloud.cfg.d/90_edge-agent-datasource.cfg\"" \
		--customize-hook="cp '$here/10-wired.network' \"\$1/etc/systemd/network/10-wired.network\"" \
		--customize-hook='chroot "$1" systemctl enable systemd-networkd.service systemd-timesyncd.service' \
		--customize-hook="mkdir -p \"\$1/opt/edge-agent\" && cp -r '$work/stage' \"\$1/opt/edge-agent/src\"" \
		--customize-hook='chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root /opt/edge-agent/src/install-agent.sh /opt/edge-agent/src' \
		--customize-hook='rm -f "$1/etc/machine-id" && touch "$1/etc/machine-id"' \
		"$SUITE" "$work/rootfs.tar" "$MIRROR"
	mv "$work/rootfs.tar" "$rootfs"
	echo "$0: root file system built in $(($(date +%s) - start)) s" >&2
fi

# The disk: the root file system with the overlay, the boot partition, the table.
mkdir "$work/root"
tar -C "$work/root" --numeric-owner --xattrs --xattrs-include='*' -xpf "$rootfs"
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
