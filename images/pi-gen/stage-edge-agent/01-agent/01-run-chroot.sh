#!/bin/bash -e
# pi-gen, inside the image (under qemu on an x86 host): install and enable the agent.

# The agent in its own virtual environment; the compiled signal core is required: a
# build that falls back to the pure-Python twin fails here instead of on a node.
python3 -m venv /opt/edge-agent
EDGE_AGENT_REQUIRE_EXT=1 /opt/edge-agent/bin/pip install --no-cache-dir /opt/edge-agent/src/edge-agent.tar.gz
/opt/edge-agent/bin/python -c 'import edge_agent.dsp as d; assert d.IMPLEMENTATION == "cython", d.IMPLEMENTATION'
rm -rf /opt/edge-agent/src

# The service user (in the i2c and gpio groups) and the units.
systemd-sysusers /usr/lib/sysusers.d/edge-agent.conf
systemctl enable edge-agent-import.service edge-agent.service

# I2C on; the agent's buses are /dev/i2c-*.
raspi-config nonint do_i2c 0

# No access time updates on the card.
sed -i -E '/^[^#].*[[:space:]](\/|\/boot\/firmware)[[:space:]]/ { /noatime/! s/(defaults)/\1,noatime/ }' /etc/fstab
grep -Eq '[[:space:]]/[[:space:]].*noatime' /etc/fstab

# No password login anywhere: SSH takes keys only (see 00-run.sh for the accounts).
rm -f /etc/ssh/sshd_config.d/rename_user.conf
