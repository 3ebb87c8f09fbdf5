"""SIGHUP: a valid new configuration takes over without losing a sample; an invalid one is refused."""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import time

from helpers import agent_cmd

from edge_agent import wire
from edge_agent.node.store import BatchStore

INTERVAL_MS = 100  # the sensor's interval in CONFIG

CONFIG = """\
node: {{id: reload-node}}
flush_interval: 500ms
clock: {{hold_unsynced: 0s}}
mqtt: {{broker: "{broker}"}}
sensors:
  - name: air
    type: bme680
    interval: 100ms
    heater: {{duration: 30ms}}
    channels:
      temperature: {{deadband: 0}}
      humidity: {{deadband: 0}}
      pressure: {{deadband: 0}}
      gas: {{enabled: {gas}, deadband: 0}}
    sim:
      temperature: {{mean: 20, amplitude: 5, period: 10s}}
      humidity: {{mean: 50, amplitude: 5, period: 7s}}
      pressure: {{mean: 1000, amplitude: 5, period: 9s}}
      gas: {{mean: 50000, amplitude: 5000, period: 8s}}
"""


def wait_for(path, pattern, timeout=15.0, after=0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text()
        if re.search(pattern, text[after:]):
            return text
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not in log:\n{path.read_text()}")


def test_sighup_reloads_valid_config_and_rejects_invalid(tmp_path):
    # The broker is unreachable on purpose: every sealed batch stays in the store to inspect.
    cfg = tmp_path / "node.yaml"
    cfg.write_text(CONFIG.format(broker="mqtt://127.0.0.1:9", gas="true"))
    err = tmp_path / "agent.err"
    agent = subprocess.Popen(
        agent_cmd("run", "--simulate", "--config", str(cfg), "--state-dir", str(tmp_path / "state")),
        stderr=open(err, "wb"),
    )
    try:
        wait_for(err, r"batch_sealed stream=air seq=1 ")
        cfg.write_text(CONFIG.format(broker="mqtt://127.0.0.1:9", gas="false"))
        os.kill(agent.pid, signal.SIGHUP)
        text = wait_for(err, r"event=reloaded")
        mark = len(text)
        wait_for(err, r"batch_sealed", after=mark)
        cfg.write_text(
            CONFIG.format(broker="mqtt://127.0.0.1:9", gas="false").replace(
                "interval: 100ms", "interval: 100ms\n    filters: [{type: median, window: 0}]"
            )
        )
        os.kill(agent.pid, signal.SIGHUP)
        text = wait_for(err, r"event=reload_rejected", after=mark)
        mark2 = len(text)
        wait_for(err, r"batch_sealed", after=mark2)  # still sampling under the old config
    finally:
        os.kill(agent.pid, signal.SIGTERM)
        assert agent.wait(timeout=20) == 0, err.read_text()
    log = err.read_text()
    assert "sensors[0].filters[0].window" in log  # the rejection says what and where
    seqs = [int(s) for s in re.findall(r"batch_sealed stream=air seq=(\d+)", log)]
    reload_at = log.index("event=reloaded")
    with BatchStore(str(tmp_path / "state" / "queue.sqlite3")) as store:
        rows = store.oldest(10_000)
    assert [r.seq for r in rows] == list(range(len(rows))) == seqs  # nothing lost, no number reused
    before = len(re.findall(r"batch_sealed", log[:reload_at]))
    channels = [{c.name for c in wire.decode(r.payload).channels} for r in rows]
    assert all("gas" in c for c in channels[:before])
    assert all("gas" not in c for c in channels[before:]) and len(channels) > before
    # samples are continuous across the reload: counted on the 100 ms grid of sample slots,
    # every slot from the first to the last holds exactly one sample (a reading's time
    # jitters around its slot, so each is put in the slot nearest it)
    times = sorted(
        t
        for r in rows
        for c in wire.decode(r.payload).channels
        if c.name == "temperature"
        for t in c.times_ms
    )
    phase = statistics.median_low(t % INTERVAL_MS for t in times)
    slots = [round((t - phase) / INTERVAL_MS) for t in times]
    assert len(slots) > len(rows) and slots == list(range(slots[0], slots[0] + len(slots))), (
        f"missed or doubled sample slots around the reload: {slots}"
    )


BAD_FILES = {
    "a sensor type that is a list": lambda good: good.replace("type: bme680", "type: [bme680]"),
    "not YAML": lambda good: good + "\n  - : : [\n",
    "binary": lambda good: "\x00\xff\xfe garbage \x01",
    "duplicate keys": lambda good: good.replace("node: {id: reload-node}", "node: {id: reload-node, id: x}"),
    "an alias bomb": lambda good: (
        "a: &a ["
        + ",".join(["x"] * 50)
        + "]\n"
        + "".join(f"{c}: &{c} [" + ",".join([f"*{p}"] * 50) + "]\n" for p, c in zip("abcd", "bcde"))
    ),
    "over 1 MiB": lambda good: good + "#" * (1 << 20),
    "an empty file": lambda good: "",
}


def test_sighup_with_any_bad_file_keeps_the_running_configuration(tmp_path):
    """The docs promise: an invalid file on SIGHUP is refused and the old configuration keeps
    running, whatever the file holds (a list for a type stopped the agent once)."""
    good = CONFIG.format(broker="mqtt://127.0.0.1:9", gas="true")
    cfg = tmp_path / "node.yaml"
    cfg.write_text(good)
    err = tmp_path / "agent.err"
    agent = subprocess.Popen(
        agent_cmd("run", "--simulate", "--config", str(cfg), "--state-dir", str(tmp_path / "state")),
        stderr=open(err, "wb"),
    )
    try:
        text = wait_for(err, r"batch_sealed stream=air seq=0 ")
        for what, bad in [*BAD_FILES.items(), ("a deleted file", None), ("a directory", "dir")]:
            mark = len(text)
            if bad is None:
                cfg.unlink()
            elif bad == "dir":
                cfg.mkdir()
            else:
                cfg.write_bytes(bad(good).encode("utf-8", "surrogateescape"))
            os.kill(agent.pid, signal.SIGHUP)
            text = wait_for(err, r"event=reload_rejected", after=mark)
            assert "Traceback" not in text, what
            text = wait_for(err, r"batch_sealed stream=air", after=len(text))  # still sampling
            assert agent.poll() is None, what
            if cfg.is_dir():
                cfg.rmdir()
        cfg.write_text(good.replace("gas: {enabled: true", "gas: {enabled: false"))
        mark = len(text)
        os.kill(agent.pid, signal.SIGHUP)
        wait_for(err, r"event=reloaded", after=mark)
    finally:
        os.kill(agent.pid, signal.SIGTERM)
        assert agent.wait(timeout=20) == 0, err.read_text()
    assert err.read_text().count("event=reload_rejected") == len(BAD_FILES) + 2
