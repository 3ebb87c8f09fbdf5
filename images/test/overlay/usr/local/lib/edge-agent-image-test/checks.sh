#!/bin/bash
# The image test's checks inside the guest. Each result is one line "KEY VALUE..." on the
# virtio port edge-results; blocks of text between "BEGIN NAME" and "END NAME". Bounded:
# every wait has a limit, and the guest powers off at the end whatever happened.
set -u
port=/dev/virtio-ports/edge-results
for _ in $(seq 60); do [ -e "$port" ] && break; sleep 1; done
exec 3>"$port"
say() { printf '%s\n' "$*" >&3; }
block() { say "BEGIN $1"; shift; "$@" >&3 2>&1; say "END"; }
prop() { systemctl show -p "$2" --value "$1"; }
trap 'say DONE; sync; systemctl poweroff' EXIT

# cloud-init done (host name, the technicians' account), bounded
timeout 900 cloud-init status --wait >/dev/null 2>&1
say cloud_init "$(cloud-init status 2>&1 | tr '\n' ' ')"

# READY: a Type=notify unit is active only once the agent has sent READY=1.
for _ in $(seq 300); do
	[ "$(prop edge-agent ActiveState)" = active ] && break
	sleep 1
done
say ready_state "$(prop edge-agent ActiveState)"
say ready_monotonic_us "$(prop edge-agent ActiveEnterTimestampMonotonic)"
if [ "$(prop edge-agent ActiveState)" != active ]; then # nothing else can pass: say why, stop
	block status systemctl status --no-pager -l edge-agent edge-agent-import
	block journal journalctl --no-pager -o short-monotonic -u edge-agent -u edge-agent-import
	exit 1
fi
pid=$(prop edge-agent MainPID)
uid=$(while read -r k v _; do [ "$k" = Uid: ] && echo "$v"; done <"/proc/$pid/status")
say agent_user "$(getent passwd "$uid" | cut -d: -f1)"
say agent_unit_user "$(prop edge-agent User)"
say core "$(/opt/edge-agent/bin/python -c 'import edge_agent.dsp as d; print(d.IMPLEMENTATION)')"
for unit in cloud-init-local cloud-init cloud-config cloud-final edge-agent-import edge-agent systemd-sysusers; do
	say unit "$unit" "$(prop "$unit" ActiveState)" "$(prop "$unit" Result)" \
		start "$(prop "$unit" ExecMainStartTimestampMonotonic)" \
		exit "$(prop "$unit" ExecMainExitTimestampMonotonic)" \
		active "$(prop "$unit" ActiveEnterTimestampMonotonic)"
done
# accounts: every password locked; the technicians' account made by cloud-init, with its key
getent shadow | while IFS=: read -r name pw _; do
	case "$pw" in '!'* | '*'*) ;; *) say unlocked "$name" ;; esac
done
say account_root "$(getent shadow root | cut -d: -f2 | cut -c1)"
say account_tech "$(getent shadow tech | cut -d: -f2 | cut -c1)" "$(id -nG tech 2>&1 | tr ' ' ,)"
say tech_keys "$(wc -l </home/tech/.ssh/authorized_keys 2>/dev/null || echo none)"
say default_user_debian "$(getent passwd debian >/dev/null && echo present || echo absent)"
say sshd_password "$(sshd -T 2>/dev/null | grep -i '^passwordauthentication' | cut -d' ' -f2)"
say hostname "$(hostname)"
say etc_modes "$(stat -c '%n:%a:%U:%G' /etc/edge-agent /etc/edge-agent/* | tr '\n' ' ')"
say fstab_noatime "$(grep -c noatime /etc/fstab)"
say journald "$(systemd-analyze cat-config systemd/journald.conf | grep -E '^(Storage|RuntimeMaxUse)=' | tr '\n' ' ')"
block security systemd-analyze security --no-pager edge-agent.service
say clock "$(timedatectl show -p NTPSynchronized --value)"

# Let batches flow, then the watchdog: SIGSTOP the agent; systemd must kill and restart it.
sleep 30
restarts=$(prop edge-agent NRestarts)
say watchdog_before "$pid" "$restarts" "$(cut -d' ' -f1 /proc/uptime)"
kill -STOP "$pid"
for _ in $(seq 300); do
	[ "$(prop edge-agent NRestarts)" != "$restarts" ] && [ "$(prop edge-agent ActiveState)" = active ] && break
	sleep 1
done
say watchdog_after "$(prop edge-agent MainPID)" "$(prop edge-agent NRestarts)" "$(cut -d' ' -f1 /proc/uptime)"
say watchdog_usec "$(prop edge-agent WatchdogUSec)"
sleep 20

# commission, as the service's user, the agent stopped (it would share the sensors)
systemctl stop edge-agent
runuser -u edge-agent -- /opt/edge-agent/bin/edge-agent commission --simulate --json \
	--config /etc/edge-agent/node.yaml >/run/commission.json 2>/run/commission.err
say commission_exit $?
block commission cat /run/commission.json
block commission_err cat /run/commission.err
block journal journalctl --no-pager -o short-monotonic -u edge-agent -u edge-agent-import
block boot_dir ls -la /boot/firmware /boot/firmware/edge-agent
