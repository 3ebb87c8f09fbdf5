"""The system probe (edge_agent/node/sysinfo.py) against a fake /sys, /proc and /run tree."""

from __future__ import annotations

from fake_sysroot import fake_root

from edge_agent.node.sysinfo import SystemProbe


def test_probe_reads_the_fake_tree(tmp_path):
    p = SystemProbe(str(fake_root(tmp_path)))
    assert p.cpu_temperature() == 48.312
    t = p.throttled()
    assert t["raw"] == "0x50005"
    assert t["under_voltage"] and t["throttled"] and not t["freq_capped"]
    assert t["under_voltage_since_boot"] and t["throttled_since_boot"] and not t["soft_temp_limit_since_boot"]
    assert p.load() == [0.42, 0.30, 0.12]
    assert p.memory() == {"total_bytes": 439592 * 1024, "available_bytes": 251200 * 1024}
    assert p.boot_id() == "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    assert p.uptime() == 12345.67
    assert p.process_io()["write_bytes"] == 8192
    assert p.clock().synchronized and p.clock().source == "timesyncd"


def test_probe_reports_missing_facts_as_none(tmp_path):
    p = SystemProbe(str(fake_root(tmp_path, {"proc/loadavg": "garbage\n"})))
    assert p.cpu_temperature() is None and p.throttled() is None and p.memory() is None
    assert p.load() is None and p.boot_id() is None
    assert not p.clock().synchronized
