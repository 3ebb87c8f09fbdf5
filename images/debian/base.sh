#!/bin/bash
# The base layer of the Debian arm64 test image: Debian 12's packages and the system's
# settings, without the agent (images/debian/build.sh installs it on a copy of this).
#
#   images/debian/base.sh OUT.tar DISK_ID
#
# mmdebstrap, its arm64 steps under qemu-user (build.sh registers binfmt). The slow part
# of a first build (dpkg under emulation); build.sh caches OUT.tar under a key of this
# script, the package list and the files below only, so a change to the agent does not
# rebuild it.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 OUT.tar DISK_ID" >&2; exit 64; }
out=$1
disk_id=${2#0x}
here=$(cd "$(dirname "$0")" && pwd)
SUITE=bookworm
MIRROR=${EDGE_AGENT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=$(grep -v '^#' "$here/packages" | tr '\n' ',' | sed 's/,,*/,/g; s/^,//; s/,$//')

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
		'PARTUUID=$disk_id-01 /boot/firmware vfat defaults 0 2' \
		'PARTUUID=$disk_id-02 / ext4 defaults 0 1' >\"\$1/etc/fstab\"" \
	--customize-hook='mkdir -p "$1/boot/firmware"' \
	--customize-hook="cp '$here/cloud-edge-agent-datasource.cfg' \"\$1/etc/cloud/cloud.cfg.d/90_edge-agent-datasource.cfg\"" \
	--customize-hook="cp '$here/10-wired.network' \"\$1/etc/systemd/network/10-wired.network\"" \
	--customize-hook='chroot "$1" systemctl enable systemd-networkd.service systemd-timesyncd.service' \
	--customize-hook='rm -f "$1/etc/machine-id" && touch "$1/etc/machine-id"' \
	"$SUITE" "$out" "$MIRROR"
