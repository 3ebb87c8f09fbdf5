#!/bin/bash -e
# pi-gen, on the build host: put the agent's source, units and settings into the image.
# files/edge-agent.tar.gz and the units are staged by images/build.sh from the repository.

install -d -m 755 "${ROOTFS_DIR}/opt/edge-agent/src"
install -m 644 files/edge-agent.tar.gz "${ROOTFS_DIR}/opt/edge-agent/src/edge-agent.tar.gz"

install -m 644 files/edge-agent.service "${ROOTFS_DIR}/etc/systemd/system/edge-agent.service"
install -m 644 files/edge-agent-import.service "${ROOTFS_DIR}/etc/systemd/system/edge-agent-import.service"
install -m 644 files/edge-agent.sysusers.conf "${ROOTFS_DIR}/usr/lib/sysusers.d/edge-agent.conf"

install -d -m 755 "${ROOTFS_DIR}/etc/systemd/journald.conf.d"
install -m 644 files/journald-edge-agent.conf "${ROOTFS_DIR}/etc/systemd/journald.conf.d/10-edge-agent.conf"
install -d -m 755 "${ROOTFS_DIR}/etc/ssh/sshd_config.d"
install -m 644 files/sshd-edge-agent.conf "${ROOTFS_DIR}/etc/ssh/sshd_config.d/10-edge-agent.conf"

install -d -m 755 "${ROOTFS_DIR}/usr/share/doc/edge-agent/images"
install -m 644 files/README.md "${ROOTFS_DIR}/usr/share/doc/edge-agent/README.md"
install -m 644 files/images-README.md "${ROOTFS_DIR}/usr/share/doc/edge-agent/images/README.md"

# No password on any account. Root is locked here. The technicians' account is created by
# cloud-init at first boot: our settings, read after pi-gen's 99_default.cfg, replace its
# user entry with a locked password, the team's SSH key and no SSH password login.
# (Expanded here, on the host, where pi-gen's settings are.)
install -d -m 755 "${ROOTFS_DIR}/etc/cloud/cloud.cfg.d"
cat >"${ROOTFS_DIR}/etc/cloud/cloud.cfg.d/99_edge-agent.cfg" <<EOF
#cloud-config
users:
  - name: ${FIRST_USER_NAME}
    groups: [adm, sudo, i2c, gpio, systemd-journal, netdev]
    lock_passwd: true
    sudo: ["ALL=(ALL) NOPASSWD:ALL"]
    shell: /bin/bash
    ssh_authorized_keys:
      - ${PUBKEY_SSH_FIRST_USER}
ssh_pwauth: false
disable_root: true
EOF
on_chroot <<EOF
passwd -l root
if id -u "${FIRST_USER_NAME}" >/dev/null 2>&1; then passwd -l "${FIRST_USER_NAME}"; fi
EOF
