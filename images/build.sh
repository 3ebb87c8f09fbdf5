#!/bin/bash
# Build the edge-agent SD image with pi-gen (Raspberry Pi OS Lite + the edge-agent stage).
#
#   images/build.sh PI_GEN_DIR TECH_SSH_PUBKEY_FILE [--docker]
#
# PI_GEN_DIR is a checkout of https://github.com/RPi-Distro/pi-gen (branch "arm64" for
# 64-bit images). The build needs root, loop devices and qemu-user-static with binfmt
# (or, with --docker, pi-gen's build-docker.sh and Docker with binfmt on the host).
set -euo pipefail

usage() {
	echo "usage: $0 PI_GEN_DIR TECH_SSH_PUBKEY_FILE [--docker]" >&2
	exit 64
}

[ $# -ge 2 ] || usage
pigen=$1
pubkey_file=$2
mode=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

[ -x "$pigen/build.sh" ] || { echo "$pigen: not a pi-gen checkout (no build.sh)" >&2; exit 66; }
[ -r "$pubkey_file" ] || { echo "$pubkey_file: cannot read the technicians' SSH public key" >&2; exit 66; }
pubkey=$(head -n 1 "$pubkey_file")
case "$pubkey" in
ssh-ed25519\ * | ecdsa-sha2-* | ssh-rsa\ *) ;;
*) echo "$pubkey_file: not an SSH public key" >&2; exit 65 ;;
esac

stage="$pigen/stage-edge-agent"
rm -rf "$stage"
cp -a "$here/pi-gen/stage-edge-agent" "$stage"
files="$stage/01-agent/files"
# The agent's source as the repository has it committed, and the units it installs.
git -C "$repo" archive --format=tar.gz --prefix=edge-agent/ -o "$files/edge-agent.tar.gz" HEAD
cp "$repo/systemd/edge-agent.service" "$repo/systemd/edge-agent-import.service" \
	"$repo/systemd/edge-agent.sysusers.conf" "$files/"
cp "$repo/README.md" "$files/README.md"
cp "$here/README.md" "$files/images-README.md"

cp "$here/pi-gen/config" "$pigen/config"
printf 'PUBKEY_SSH_FIRST_USER="%s"\n' "$pubkey" >>"$pigen/config"
# Only our stage exports an image: stages 2's own export would be a plain Lite image.
rm -f "$pigen/stage2/EXPORT_IMAGE" "$pigen/stage2/EXPORT_NOOBS"

cd "$pigen"
if [ "$mode" = "--docker" ]; then
	./build-docker.sh
else
	[ "$(id -u)" = 0 ] || { echo "pi-gen's build.sh runs as root (or use --docker)" >&2; exit 77; }
	./build.sh
fi
ls -l deploy/
