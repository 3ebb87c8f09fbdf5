"""End to end against a real Mosquitto: `edge-agent run --simulate` -> broker -> `edge-agent tail`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import agent_cmd, read_copy, wait_for_log

from drivers.sim.profiles import Wave
from edge_agent.node.store import BatchStore

INTERVAL = 0.2
MEDIAN = 3
LATENCY = 0.3  # s from the reading's timestamp to the chip's conversion start (30 ms heater), with slack

CHANNELS = {
    # name: (resolution, deadband, simulated wave, compensation rounding of the chip)
    "temperature": (0.01, 0.02, Wave(20.0, 1.0, 60.0), 0.001),
    "humidity": (0.01, 0.1, Wave(55.0), 0.01),
    "pressure": (0.01, 0.02, Wave(1000.0, 0.5, 45.0), 0.01),
    "gas": (1.0, 100.0, Wave(80000.0), 800.0),
}


def write_config(path: Path, broker_url: str, backlog_rate: float = 50) -> Path:
    chans = "\n".join(
        f"      {n}: {{resolution: {r}, deadband: {d}}}" for n, (r, d, _, _) in CHANNELS.items()
    )
    sims = "\n".join(
        f"      {n}: {{mean: {w.mean}, amplitude: {w.amplitude}, period: {w.period}s}}"
        for n, (_, _, w, _) in CHANNELS.items()
    )
    path.write_text(f"""\
node: {{id: e2e-node}}
flush_interval: 1s
clock: {{hold_unsynced: 0s}}  # this machine's clock may report unsynchronised
mqtt: {{broker: "{broker_url}", topic_prefix: e2e, backlog_rate: {backlog_rate},
       reconnect: {{min: 200ms, max: 2s}}}}
sensors:
  - name: air
    type: bme680
    interval: {int(INTERVAL * 1000)}ms
    heater: {{temperature: 320, duration: 30ms}}
    filters: [{{type: median, window: {MEDIAN}}}]
    channels:
{chans}
    sim:
{sims}
""")
    return path


def start_tail(broker, out: Path, err: Path, client_id: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        agent_cmd("tail", "--broker", broker.url, "--json", "--prefix", "e2e", "--client-id", client_id),
        stdout=open(out, "wb"),
        stderr=open(err, "wb"),
    )
    deadline = time.monotonic() + 15
    while "event=subscribed" not in err.read_text():
        assert proc.poll() is None, err.read_text()
        assert time.monotonic() < deadline, "tail did not subscribe"
        time.sleep(0.05)
    return proc


def stop(proc: subprocess.Popen, timeout: float = 20) -> int:
    os.kill(proc.pid, signal.SIGTERM)
    return proc.wait(timeout=timeout)


def sealed_seqs(log: str) -> list[int]:
    return [int(m) for m in re.findall(r"event=batch_sealed stream=air seq=(\d+)", log)]


def wait_for_rows(out: Path, expected: set[int], timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
        if {r["seq"] for r in rows} >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def check_values(rows: list[dict]) -> None:
    """Every kept point matches the simulator, and holding it covers the wave until the next one."""
    by_channel: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        by_channel.setdefault(r["channel"], []).append((r["t"], r["value"]))
    assert set(by_channel) == set(CHANNELS)
    for name, points in by_channel.items():
        res, width, wave, rounding = CHANNELS[name]
        points.sort()
        lag = wave.max_slope() * ((MEDIAN - 1) * INTERVAL + INTERVAL + LATENCY)
        for t, v in points:
            assert abs(v - wave.at(t)) <= res / 2 + rounding + lag, (name, t, v, wave.at(t))
        bound = width + res / 2 + rounding + lag  # the chain's stated bound plus sampling lag
        for (t0, v0), (t1, _) in zip(points, [*points[1:], (points[-1][0], None)]):
            t = t0
            while t < t1:
                assert abs(wave.at(t) - v0) <= bound, (name, t, v0, wave.at(t), bound)
                t += 0.05
    # the waves moved through the deadband more than once
    assert len(by_channel["temperature"]) + len(by_channel["pressure"]) >= 6


@pytest.mark.broker
def test_simulated_node_to_broker_to_tail(broker, tmp_path):
    cfg = write_config(tmp_path / "node.yaml", broker.url)
    tail = start_tail(broker, tmp_path / "tail.out", tmp_path / "tail.err", "e2e-tail")
    agent_err = tmp_path / "agent.err"
    agent = subprocess.Popen(
        agent_cmd("run", "--simulate", "--config", str(cfg), "--state-dir", str(tmp_path / "state")),
        stderr=open(agent_err, "wb"),
    )
    try:
        wait_for_log(
            agent, agent_err, lambda text: len(sealed_seqs(text)) >= 4 and "event=uplink_connected" in text
        )
        time.sleep(1)
    finally:
        assert stop(agent) == 0, agent_err.read_text()
    log = agent_err.read_text()
    seqs = sealed_seqs(log)
    assert seqs == list(range(len(seqs))) and len(seqs) >= 3, log
    assert "event=uplink_connected" in log and "core=" in log
    rows = wait_for_rows(tmp_path / "tail.out", set(range(seqs[-1] + 1)))
    assert stop(tail) == 0
    got = {r["seq"] for r in rows}
    assert got == set(range(seqs[-1] + 1)), f"missing {set(range(seqs[-1] + 1)) - got}"
    assert {(r["node"], r["stream"]) for r in rows} == {("e2e-node", "air")}
    check_values(rows)
    with BatchStore(str(tmp_path / "state" / "queue.sqlite3")) as store:
        assert store.depth() == (0, 0)  # everything acknowledged left the store


@pytest.mark.broker
def test_broker_outage_keeps_data_until_it_returns(broker, tmp_path):
    # The backlog must outlast a flush interval after the reconnect for "live first" to show:
    # the outage lasts until 4 batches are sealed, which drain at 1/s, while a live batch is
    # sealed within 1 s of the reconnect. (At 2/s, three batches once drained before it.)
    cfg = write_config(tmp_path / "node.yaml", broker.url, backlog_rate=1)
    tail = start_tail(broker, tmp_path / "tail.out", tmp_path / "tail.err", "outage-tail")
    broker.stop()
    agent_err = tmp_path / "agent.err"
    agent = subprocess.Popen(
        agent_cmd("run", "--simulate", "--config", str(cfg), "--state-dir", str(tmp_path / "state")),
        stderr=open(agent_err, "wb"),
    )
    try:
        log = wait_for_log(agent, agent_err, lambda text: len(sealed_seqs(text)) >= 4)
        assert "event=uplink_offline" in log, log  # sampling and storing went on without the broker
        # all of them: nothing can be delivered (a copy: the agent holds its queue, store_vfs)
        queue = tmp_path / "state" / "queue.sqlite3"
        assert read_copy(queue, tmp_path, "SELECT count(*) FROM batches")[0][0] >= 4
        broker.start()  # tail's persistent session survived in the broker's persistence file
        wait_for_log(agent, agent_err, lambda text: "event=uplink_connected" in text)
        time.sleep(3)
    finally:
        assert stop(agent) == 0, agent_err.read_text()
    seqs = sealed_seqs(agent_err.read_text())
    # The backlog drains at 1 batch/s and a stop waits at most 5 s: on a slow machine some
    # of it may still be in the store, to be sent at the next start. None may be missing.
    with BatchStore(str(tmp_path / "state" / "queue.sqlite3")) as store:
        pending = {r.seq for r in store.oldest(10_000)}
    rows = wait_for_rows(tmp_path / "tail.out", set(range(seqs[-1] + 1)) - pending)
    stop(tail)
    got = {r["seq"] for r in rows}
    assert got | pending == set(range(seqs[-1] + 1)), (
        f"missing {set(range(seqs[-1] + 1)) - got - pending}\nagent:\n{agent_err.read_text()}\n"
        f"tail:\n{(tmp_path / 'tail.err').read_text()}"
    )
    check_values(rows)
    # Live first: the backlog (sealed during the outage) is flagged historical and drains at
    # 1 batch/s behind batches sealed after the link came back.
    order = list(dict.fromkeys((r["seq"], bool(r.get("historical"))) for r in rows))
    historical = sorted(seq for seq, h in order if h)
    live = [seq for seq, h in order if not h]
    assert historical == list(range(len(historical))) and len(historical) >= 2
    assert min(live) == len(historical)
    arrival = [seq for seq, _ in order]
    assert arrival.index(min(live)) < arrival.index(historical[-1]), arrival


@pytest.mark.broker
def test_all_five_sensor_types_together_reach_tail(broker, tmp_path):
    cfg = tmp_path / "node.yaml"
    cfg.write_text(f"""\
node: {{id: five-node}}
flush_interval: 1s
clock: {{hold_unsynced: 0s}}
mqtt: {{broker: "{broker.url}", topic_prefix: e2e}}
sensors:
  - {{name: air, type: bme680, interval: 500ms, heater: {{duration: 30ms}}}}
  - {{name: dust, type: pmsa003i, interval: 1s}}
  - {{name: co2, type: scd4x, interval: 1s, asc: 0}}
  - {{name: mains, type: ina226, address: 0x41, shunt_ohms: 0.002, max_current: 20,
     sim: {{bus_voltage: 24.0, current: 7.5}}}}
  - {{name: meter, type: s0, pin: 17, pulses_per_kwh: 1000, sim: {{power: 7200}}}}
""")
    tail = start_tail(broker, tmp_path / "tail.out", tmp_path / "tail.err", "five-tail")
    err = tmp_path / "agent.err"
    agent = subprocess.Popen(
        agent_cmd("run", "--simulate", "--config", str(cfg), "--state-dir", str(tmp_path / "state")),
        stderr=open(err, "wb"),
    )
    try:
        # until every stream sealed a batch (the SCD4x gives its first result after 5 s)
        wait_for_log(
            agent,
            err,
            lambda text: (
                set(re.findall(r"event=batch_sealed stream=(\w+)", text))
                == {"air", "dust", "co2", "mains", "meter"}
            ),
            timeout=40,
        )
        time.sleep(1)
    finally:
        assert stop(agent) == 0, err.read_text()
    seqs = {}
    for m in re.finditer(r"event=batch_sealed stream=(\w+) seq=(\d+)", err.read_text()):
        seqs.setdefault(m.group(1), set()).add(int(m.group(2)))
    deadline = time.monotonic() + 20
    while True:
        rows = [json.loads(line) for line in (tmp_path / "tail.out").read_text().splitlines() if line.strip()]
        got = {}
        for r in rows:
            got.setdefault(r["stream"], set()).add(r["seq"])
        if got == seqs or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    stop(tail)
    assert set(seqs) == {"air", "dust", "co2", "mains", "meter"}, err.read_text()
    assert got == seqs  # every sealed batch of every stream arrived
    channels = {(r["stream"], r["channel"]) for r in rows}
    for expected in [
        ("air", "gas"),
        ("dust", "pm2_5"),
        ("co2", "co2"),
        ("mains", "current"),
        ("meter", "energy"),
    ]:
        assert expected in channels
    value = {(r["stream"], r["channel"]): r["value"] for r in rows}
    assert value[("co2", "co2")] == 420.0 and value[("dust", "pm2_5")] == 8.0
    assert abs(value[("mains", "current")] - 7.5) < 0.001
    assert "event=sensor_down" not in err.read_text()
