#!/bin/bash
# Install edge-agent into an image: the one step both recipes share (pi-gen's stage for
# Raspberry Pi OS, images/debian/build.sh for Debian arm64). Run as root inside the image's
# root file system (a chroot, under qemu-user on an x86 host), from the directory
# images/stage.sh filled, copied to /opt/edge-agent/src; removed at the end.
set -euo pipefail

src=${1:-/opt/edge-agent/src}
tech=$(head -n 1 "$src/tech-user")
pubkey=$(head -n 1 "$src/tech-user.pub")

# The units, the service user, the journal in RAM, SSH with keys only, the docs.
install -m 644 "$src/edge-agent.service" /etc/systemd/system/edge-agent.service
install -m 644 "$src/edge-agent-launcher.service" /etc/systemd/system/edge-agent-launcher.service
install -m 644 "$src/edge-agent-import.service" /etc/systemd/system/edge-agent-import.service
install -D -m 644 "$src/edge-agent.sysusers.conf" /usr/lib/sysusers.d/edge-agent.conf
install -D -m 644 "$src/journald-edge-agent.conf" /etc/systemd/journald.conf.d/10-edge-agent.conf
install -D -m 644 "$src/sshd-edge-agent.conf" /etc/ssh/sshd_config.d/10-edge-agent.conf
install -D -m 644 "$src/README.md" /usr/share/doc/edge-agent/README.md
install -D -m 644 "$src/images-README.md" /usr/share/doc/edge-agent/images/README.md

# The agent in its own virtual environment; the compiled signal core is required: a
# build that falls back to the pure-Python twin fails here instead of on a node.
# (No pip settings of the build host: a clean environment; a build machine whose way to
# PyPI needs its own CA staged it as pip-ca.pem, used here only and removed with src.)
python3 -m venv /opt/edge-agent
pip_ca=()
[ -f "$src/pip-ca.pem" ] && pip_ca=(PIP_CERT="$src/pip-ca.pem")
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 EDGE_AGENT_REQUIRE_EXT=1 "${pip_ca[@]}" \
	/opt/edge-agent/bin/pip install --no-cache-dir --disable-pip-version-check "$src/edge-agent.tar.gz"
/opt/edge-agent/bin/python -c 'import edge_agent.dsp as d; assert d.IMPLEMENTATION == "cython", d.IMPLEMENTATION'

# The service user (in the i2c and gpio groups, created if the system has none) and the units.
# The agent runs through the launcher, so that the fleet can update it (docs/fleet.md): with no
# release installed it runs this image's agent. edge-agent.service (the agent alone, no
# releases) is installed, not enabled; the two conflict.
systemd-sysusers /usr/lib/sysusers.d/edge-agent.conf
systemctl enable edge-agent-import.service edge-agent-launcher.service

# I2C on (Raspberry Pi OS); the agent's buses are /dev/i2c-*.
if command -v raspi-config >/dev/null 2>&1; then
	raspi-config nonint do_i2c 0
fi

# No access time updates on the card.
sed -i -E '/^[^#].*[[:space:]](\/|\/boot\/firmware)[[:space:]]/ { /noatime/! s/(defaults)/\1,noatime/ }' /etc/fstab
grep -Eq '[[:space:]]/[[:space:]].*noatime' /etc/fstab

# No password on any account. Root is locked here. The technicians' account is created by
# cloud-init at first boot: our settings, read after the image's own (pi-gen's
# 99_default.cfg, Debian's cloud.cfg default user), replace its user list with one locked
# account, the team's SSH key, and no SSH password login.
install -d -m 755 /etc/cloud/cloud.cfg.d
cat >/etc/cloud/cloud.cfg.d/99_edge-agent.cfg <<CFG
#cloud-config
users:
  - name: ${tech}
    groups: [adm, sudo, i2c, gpio, systemd-journal, netdev]
    lock_passwd: true
    sudo: ["ALL=(ALL) NOPASSWD:ALL"]
    shell: /bin/bash
    ssh_authorized_keys:
      - ${pubkey}
ssh_pwauth: false
disable_root: true
# the image's locale as built: no locale generation at first boot (Debian's small image has
# no locales package, and cloud-init's default en_US.UTF-8 then fails the boot's status)
locale: false
CFG
passwd -l root
if id -u "$tech" >/dev/null 2>&1; then passwd -l "$tech"; fi
rm -f /etc/ssh/sshd_config.d/rename_user.conf

rm -rf "$src"
