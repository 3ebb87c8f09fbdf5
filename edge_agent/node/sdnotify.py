"""The sd_notify protocol, spoken directly over $NOTIFY_SOCKET (no libsystemd).

systemd passes the socket path in ``NOTIFY_SOCKET`` (a leading ``@`` means the
abstract namespace) and, with ``WatchdogSec=``, the timeout in ``WATCHDOG_USEC``
(and the pid it applies to in ``WATCHDOG_PID``). Outside systemd both are unset
and every call here is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("edge_agent.sdnotify")


class Notifier:
    """Sends state lines (``READY=1``, ``STATUS=...``, ``WATCHDOG=1``) to systemd."""

    def __init__(self, address: str | None) -> None:
        self.address: str | None = None
        self._sock: socket.socket | None = None
        self.failures = 0
        self.dropped = 0  # notifications not sent because the receiver's queue was full
        if address:
            self.address = "\0" + address[1:] if address.startswith("@") else address
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Notifier:
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *fields: str) -> bool:
        """Send one datagram of newline-separated fields; False if it could not be sent,
        or would have had to wait (counted in ``dropped``)."""
        if self._sock is None or self.address is None:
            return False
        try:
            # Never wait for a slow receiver: the sampler's loop sends these.
            self._sock.sendto("\n".join(fields).encode("utf-8"), socket.MSG_DONTWAIT, self.address)
            return True
        except BlockingIOError:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("event=sd_notify_dropped reason='receiver queue full' dropped=%d", self.dropped)
            return False
        except OSError as exc:
            self.failures += 1
            if self.failures == 1 or self.failures % 100 == 0:
                log.warning("event=sd_notify_failed error=%r failures=%d", str(exc), self.failures)
            return False

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def reloading(self) -> bool:
        return self.notify(
            "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
        )

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(env: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between pings (half of WatchdogSec=), or None when no watchdog applies to us."""
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("event=bad_watchdog_usec value=%r", usec)
        return None
    return value / 2e6 if value > 0 else None


class Watchdog:
    """Pings systemd only while every progress check passes.

    ``checks`` are callables taking the monotonic time and returning None when
    that part of the pipeline progresses, or a short reason when it does not.
    ``tick(now)`` is called from the sampler's loop; it returns when it next wants
    to be called. A stuck sampler never calls it, a stuck uplink fails its check:
    either way the pings stop and systemd restarts the service.
    """

    def __init__(
        self,
        notifier: Notifier,
        interval: float | None,
        checks: list[Callable[[float], str | None]],
        status: Callable[[], str] | None = None,
    ) -> None:
        self.notifier = notifier
        self.interval = interval
        self.checks = checks
        self.status = status
        self.next_ping = 0.0
        self.pings = 0
        self.withheld = 0
        self._withholding: str | None = None

    def tick(self, now: float) -> float:
        if self.interval is None:
            if self.status is not None and self.notifier.enabled and now >= self.next_ping:
                self.notifier.status(self.status())
                self.next_ping = now + 30.0
            return self.next_ping if self.notifier.enabled and self.status else float("inf")
        if now < self.next_ping:
            return self.next_ping
        reasons = [r for r in (check(now) for check in self.checks) if r]
        if reasons:
            self.withheld += 1
            reason = "; ".join(reasons)
            if reason != self._withholding:
                log.error("event=watchdog_withheld reason=%r", reason)
                self._withholding = reason
        else:
            if self._withholding is not None:
                log.info("event=watchdog_resumed")
                self._withholding = None
            fields = ["WATCHDOG=1"]
            if self.status is not None:
                fields.append(f"STATUS={self.status()}")
            self.notifier.notify(*fields)
            self.pings += 1
        self.next_ping = now + self.interval
        return self.next_ping
