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

[ -x "$pigen/build.sh" ] || { echo "$pigen: not a pi-gen checkout (no build.sh)" >&2; exit 66; }
[ -r "$pubkey_file" ] || { echo "$pubkey_file: cannot read the technicians' SSH public key" >&2; exit 66; }
pubkey=$(head -n 1 "$pubkey_file")

stage="$pigen/stage-edge-agent"
rm -rf "$stage"
cp -a "$here/pi-gen/stage-edge-agent" "$stage"
# The agent's source as the repository has it committed, its units and settings, the
# technicians' key: staged for the install step both recipes share (images/install-agent.sh).
"$here/stage.sh" "$stage/01-agent/files" tech "$pubkey_file"
# A way to PyPI that needs its own CA (pip's PIP_CERT): the install step uses it, then removes it.
pip_ca=${EDGE_AGENT_PIP_CERT:-${PIP_CERT:-}}
if [ -n "$pip_ca" ] && [ -r "$pip_ca" ]; then cp "$pip_ca" "$stage/01-agent/files/pip-ca.pem"; fi

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
