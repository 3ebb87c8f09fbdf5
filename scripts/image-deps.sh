#!/bin/sh
# What `make image-test` needs on a Debian host, installed with apt-get where missing (as
# root): mmdebstrap and qemu-user-static (+ arch-test) build the arm64 root file system,
# e2fsprogs/dosfstools/mtools/fdisk make the disk as plain files, qemu-system-arm boots it,
# mosquitto/openssl/openssh-client make the broker, the PKI and the technicians' key.
set -eu
missing=""
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
for pair in mmdebstrap:mmdebstrap qemu-aarch64-static:qemu-user-static arch-test:arch-test \
	qemu-system-aarch64:qemu-system-arm mkfs.ext4:e2fsprogs mkfs.fat:dosfstools mcopy:mtools \
	sfdisk:fdisk mosquitto:mosquitto openssl:openssl ssh-keygen:openssh-client \
	systemd-analyze:systemd; do
	have "${pair%%:*}" || missing="$missing ${pair#*:}"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "image-deps: missing$missing (run as root to install them)" >&2
	exit 1
fi
echo "image-deps: installing$missing with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >&2
systemctl disable --now mosquitto >/dev/null 2>&1 || true
