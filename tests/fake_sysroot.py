"""A fake /sys, /proc and /run tree of a Raspberry Pi, for the system probe (EDGE_AGENT_SYSROOT)."""

from __future__ import annotations

from pathlib import Path

FILES = {
    "sys/class/thermal/thermal_zone0/temp": "48312\n",
    "sys/devices/platform/soc/soc:firmware/get_throttled": "50005\n",
    "proc/loadavg": "0.42 0.30 0.12 1/123 4567\n",
    "proc/meminfo": "MemTotal:         439592 kB\nMemFree:          100000 kB\nMemAvailable:     251200 kB\n",
    "proc/sys/kernel/random/boot_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\n",
    "proc/uptime": "12345.67 20000.00\n",
    "proc/self/io": "rchar: 1\nwchar: 2\nsyscr: 3\nsyscw: 4\nread_bytes: 0\nwrite_bytes: 8192\n",
    "run/systemd/timesync/synchronized": "",
}


def fake_root(tmp_path: Path, files=FILES) -> Path:
    root = tmp_path / "root"
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root
