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
# The image runs the agent through the release launcher: the unit's main process is the
# launcher, the agent its child.
unit=edge-agent-launcher
agent_pid() { # the launcher's child, if it has one
	local main s ppid
	main=$(prop $unit MainPID)
	for s in /proc/[0-9]*/stat; do
		ppid=$(sed -E 's/^.*\) [A-Za-z] ([0-9]+) .*$/\1/' "$s" 2>/dev/null) || continue
		[ "$ppid" = "$main" ] && { s=${s#/proc/}; echo "${s%/stat}"; return; }
	done
}
trap 'say DONE; sync; systemctl poweroff' EXIT

# cloud-init done (host name, the technicians' account), bounded
timeout 900 cloud-init status --wait >/dev/null 2>&1
say cloud_init "$(cloud-init status 2>&1 | tr '\n' ' ')"

# READY: a Type=notify unit is active only once the agent has sent READY=1.
for _ in $(seq 300); do
	[ "$(prop $unit ActiveState)" = active ] && break
	sleep 1
done
say ready_state "$(prop $unit ActiveState)"
say ready_monotonic_us "$(prop $unit ActiveEnterTimestampMonotonic)"
if [ "$(prop $unit ActiveState)" != active ]; then # nothing else can pass: say why, stop
	block status systemctl status --no-pager -l $unit edge-agent-import
	block journal journalctl --no-pager -o short-monotonic -u $unit -u edge-agent-import
	exit 1
fi
pid=$(agent_pid)
uid=$(while read -r k v _; do [ "$k" = Uid: ] && echo "$v"; done <"/proc/$pid/status")
say agent_user "$(getent passwd "$uid" | cut -d: -f1)"
say agent_unit_user "$(prop $unit User)"
say agent_cmdline "$(tr '\0' ' ' <"/proc/$pid/cmdline")"
say enabled "$(systemctl is-enabled edge-agent-launcher.service edge-agent.service | tr '\n' ' ')"
say core "$(/opt/edge-agent/bin/python -c 'import edge_agent.dsp as d; print(d.IMPLEMENTATION)')"
for u in cloud-init-local cloud-init cloud-config cloud-final edge-agent-import $unit systemd-sysusers; do
	say unit "$u" "$(prop "$u" ActiveState)" "$(prop "$u" Result)" \
		start "$(prop "$u" ExecMainStartTimestampMonotonic)" \
		exit "$(prop "$u" ExecMainExitTimestampMonotonic)" \
		active "$(prop "$u" ActiveEnterTimestampMonotonic)"
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
block security systemd-analyze security --no-pager $unit.service
say clock "$(timedatectl show -p NTPSynchronized --value)"

# Let batches flow, then the watchdog: SIGSTOP the agent; the launcher must stop it and end,
# and systemd start the unit again.
sleep 30
restarts=$(prop $unit NRestarts)
say watchdog_before "$pid" "$restarts" "$(cut -d' ' -f1 /proc/uptime)"
kill -STOP "$pid"
for _ in $(seq 300); do
	[ "$(prop $unit NRestarts)" != "$restarts" ] && [ "$(prop $unit ActiveState)" = active ] && break
	sleep 1
done
say watchdog_after "$(agent_pid)" "$(prop $unit NRestarts)" "$(cut -d' ' -f1 /proc/uptime)"
say watchdog_usec "$(prop $unit WatchdogUSec)"
sleep 20

# commission, as the service's user, the agent stopped (it would share the sensors)
systemctl stop $unit
runuser -u edge-agent -- /opt/edge-agent/bin/edge-agent commission --simulate --json \
	--config /etc/edge-agent/node.yaml >/run/commission.json 2>/run/commission.err
say commission_exit $?
block commission cat /run/commission.json
block commission_err cat /run/commission.err
block journal journalctl --no-pager -o short-monotonic -u $unit -u edge-agent-import
block boot_dir ls -la /boot/firmware /boot/firmware/edge-agent
