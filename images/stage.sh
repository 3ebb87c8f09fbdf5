#!/bin/bash
# Stage what images/install-agent.sh installs into one directory, from the repository:
#
#   images/stage.sh OUT_DIR TECH_USER TECH_SSH_PUBKEY_FILE
#
# Both image recipes (pi-gen: images/build.sh; Debian arm64: images/debian/build.sh) copy
# OUT_DIR into the image as /opt/edge-agent/src and run install-agent.sh there.
# The agent's source is the repository's HEAD as committed (git archive).
set -euo pipefail

[ $# -eq 3 ] || { echo "usage: $0 OUT_DIR TECH_USER TECH_SSH_PUBKEY_FILE" >&2; exit 64; }
out=$1
user=$2
pubkey_file=$3
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

case "$user" in
[a-z_][a-z0-9_-]*) ;;
*) echo "$user: not a valid user name" >&2; exit 65 ;;
esac
[ -r "$pubkey_file" ] || { echo "$pubkey_file: cannot read the technicians' SSH public key" >&2; exit 66; }
pubkey=$(head -n 1 "$pubkey_file")
case "$pubkey" in
ssh-ed25519\ * | ecdsa-sha2-* | ssh-rsa\ *) ;;
*) echo "$pubkey_file: not an SSH public key" >&2; exit 65 ;;
esac

mkdir -p "$out"
git -C "$repo" archive --format=tar.gz --prefix=edge-agent/ -o "$out/edge-agent.tar.gz" HEAD
cp "$repo/systemd/edge-agent.service" "$repo/systemd/edge-agent-launcher.service" "$repo/systemd/edge-agent-import.service" \
	"$repo/systemd/edge-agent.sysusers.conf" "$out/"
cp "$here/files/journald-edge-agent.conf" "$here/files/sshd-edge-agent.conf" "$out/"
cp "$repo/README.md" "$out/README.md"
cp "$here/README.md" "$out/images-README.md"
cp "$here/install-agent.sh" "$out/install-agent.sh"
printf '%s\n' "$user" >"$out/tech-user"
printf '%s\n' "$pubkey" >"$out/tech-user.pub"
