#!/bin/bash -e
# pi-gen, on the build host: put what images/stage.sh staged (the agent's source, units,
# settings, the technicians' user and key) into the image; 01-run-chroot.sh installs it.
# files/ is filled by images/build.sh.

install -d -m 755 "${ROOTFS_DIR}/opt/edge-agent"
rm -rf "${ROOTFS_DIR}/opt/edge-agent/src"
cp -r files "${ROOTFS_DIR}/opt/edge-agent/src"
