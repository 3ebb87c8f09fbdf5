#!/bin/bash -e
# pi-gen, inside the image (under qemu on an x86 host): the install step both recipes
# share (images/install-agent.sh): the agent with its compiled core, the units, the
# service user, journald, fstab, SSH, and every password locked.
/opt/edge-agent/src/install-agent.sh /opt/edge-agent/src
