"""What the node's own system says about itself: temperature, power, memory, disk, clock.

Every path under /sys, /proc and /run is read below one root (default ``/``,
``EDGE_AGENT_SYSROOT`` to override), so tests point the whole agent at a fake
tree. A value the system does not have (no thermal zone on a laptop, no
firmware throttling file off a Pi) is reported as null, never guessed.
"""

from __future__ import annotations

import ctypes
import glob
import os
from dataclasses import dataclass

# get_throttled bits (Raspberry Pi firmware): now in the low half, "since boot" in the high half.
THROTTLE_BITS = {
    "under_voltage": 0,
    "freq_capped": 1,
    "throttled": 2,
    "soft_temp_limit": 3,
}
_SINCE_BOOT_SHIFT = 16
_TIME_ERROR = 5  # adjtimex(2): "clock not synchronized"


def default_root() -> str:
    return os.environ.get("EDGE_AGENT_SYSROOT", "/")


@dataclass(frozen=True)
class ClockState:
    synchronized: bool
    source: str  # "timesyncd", "adjtimex", or "unknown"


class SystemProbe:
    """Reads system facts below ``root``."""

    def __init__(self, root: str | None = None) -> None:
        self.root = root if root is not None else default_root()

    def path(self, rel: str) -> str:
        return os.path.join(self.root, rel.lstrip("/"))

    def _read(self, rel: str) -> str | None:
        try:
            with open(self.path(rel), encoding="ascii", errors="replace") as f:
                return f.read()
        except OSError:
            return None

    def boot_id(self) -> str | None:
        text = self._read("/proc/sys/kernel/random/boot_id")
        return text.strip() if text else None

    def uptime(self) -> float | None:
        text = self._read("/proc/uptime")
        try:
            return float(text.split()[0]) if text else None
        except (ValueError, IndexError):
            return None

    def cpu_temperature(self) -> float | None:
        """°C of thermal zone 0 (the SoC on a Raspberry Pi)."""
        text = self._read("/sys/class/thermal/thermal_zone0/temp")
        try:
            return int(text.strip()) / 1000.0 if text else None
        except ValueError:
            return None

    def throttled(self) -> dict | None:
        """The firmware's get_throttled flags, now and since boot; None off a Raspberry Pi."""
        candidates = [self.path("/sys/devices/platform/soc/soc:firmware/get_throttled")]
        candidates += sorted(glob.glob(self.path("/sys/devices/platform/soc*/*firmware*/get_throttled")))
        for p in candidates:
            try:
                with open(p, encoding="ascii") as f:
                    raw = int(f.read().strip(), 16)
            except (OSError, ValueError):
                continue
            out: dict = {"raw": f"0x{raw:x}"}
            for name, bit in THROTTLE_BITS.items():
                out[name] = bool(raw >> bit & 1)
                out[f"{name}_since_boot"] = bool(raw >> (bit + _SINCE_BOOT_SHIFT) & 1)
            return out
        return None

    def load(self) -> list[float] | None:
        text = self._read("/proc/loadavg")
        try:
            return [float(x) for x in text.split()[:3]] if text else None
        except ValueError:
            return None

    def memory(self) -> dict | None:
        """MemTotal and MemAvailable in bytes."""
        text = self._read("/proc/meminfo")
        if not text:
            return None
        fields = {}
        for line in text.splitlines():
            key, _, rest = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                try:
                    fields[key] = int(rest.split()[0]) * 1024
                except (ValueError, IndexError):
                    pass
        if "MemTotal" not in fields:
            return None
        return {"total_bytes": fields["MemTotal"], "available_bytes": fields.get("MemAvailable")}

    def process_io(self) -> dict | None:
        """This process's /proc/self/io counters (write_bytes: what reached the block layer)."""
        text = self._read("/proc/self/io")
        if not text:
            return None
        out = {}
        for line in text.splitlines():
            key, _, value = line.partition(":")
            try:
                out[key.strip()] = int(value)
            except ValueError:
                pass
        return out

    def clock(self) -> ClockState:
        """Whether the wall clock is synchronised (timesyncd's flag file, else adjtimex)."""
        if os.path.exists(self.path("/run/systemd/timesync/synchronized")):
            return ClockState(True, "timesyncd")
        if self.root != "/":
            return ClockState(False, "timesyncd")  # a fake tree: only its flag file counts
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            buf = ctypes.create_string_buffer(512)  # larger than struct timex; modes = 0: read only
            state = libc.adjtimex(buf)
        except (OSError, AttributeError):
            return ClockState(False, "unknown")
        if state < 0:
            return ClockState(False, "unknown")
        return ClockState(state != _TIME_ERROR, "adjtimex")


def disk_space(path: str) -> dict | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return {"free_bytes": st.f_bavail * st.f_frsize, "total_bytes": st.f_blocks * st.f_frsize}
