"""Energy totals across SIGKILLs: `edge-agent run --simulate` with an S0 meter and an INA226,
killed at random moments after its first seals and started again on the same store. The
energy sealed never goes backwards from one batch to the next, across every restart: what
the backbone received is never above the total a restarted node goes on from."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

from helpers import agent_cmd, free_port, wait_for_log

from edge_agent import wire
from edge_agent.node.store import BatchStore

ROUNDS = 6

CONFIG = """\
node: {{id: energy-node}}
flush_interval: 200ms
clock: {{hold_unsynced: 0s}}
mqtt: {{broker: "mqtt://127.0.0.1:{port}"}}
sensors:
  - {{name: mains, type: s0, pin: 5, pulses_per_kwh: 10000, interval: 100ms, sim: {{power: 7200}}}}
  - name: dc
    type: ina226
    address: 0x40
    shunt_ohms: 0.01
    max_current: 8
    interval: 100ms
    sim: {{bus_voltage: 30.0, current: 6.0}}
"""


def energies(store: BatchStore, stream: str) -> list[list[float]]:
    """The energy values of each sealed batch of the stream, in sequence order."""
    rows = sorted((r.seq, r.payload) for r in store.oldest(1_000_000) if r.stream == stream)
    return [
        next(c for c in wire.decode(payload).channels if c.name == "energy").values() for _, payload in rows
    ]


def test_energy_never_goes_backwards_across_kills(tmp_path):
    rng = random.Random(14)
    cfg = tmp_path / "node.yaml"
    cfg.write_text(CONFIG.format(port=free_port()))  # no broker: every batch stays in the store
    state = tmp_path / "state"
    cmd = agent_cmd("run", "--simulate", "--config", str(cfg), "--state-dir", str(state))
    sealed_per_run = []
    for round_ in range(ROUNDS):
        log = tmp_path / f"agent{round_}.err"
        agent = subprocess.Popen(cmd, stderr=open(log, "wb"))
        try:
            text = wait_for_log(
                agent,
                log,
                lambda t: "event=batch_sealed stream=mains" in t and "event=batch_sealed stream=dc" in t,
                timeout=60,
            )
            time.sleep(rng.uniform(0.0, 1.0))  # then killed anywhere: in a seal, between two
        finally:
            os.kill(agent.pid, signal.SIGKILL)
            agent.wait(timeout=10)
        text = log.read_text()
        assert "Traceback" not in text, text
        sealed_per_run.append(text.count("event=batch_sealed"))
    with BatchStore(str(state / "queue.sqlite3")) as store:
        for stream in ("mains", "dc"):
            batches = energies(store, stream)
            values = [v for b in batches for v in b]
            assert len(batches) >= 2 * ROUNDS, stream
            assert values == sorted(values), f"{stream}: the energy went backwards across a kill"
            assert values[-1] > values[0], stream  # energy flowed
    print(f"\nenergy kills: {ROUNDS} SIGKILLs, sealed per run {sealed_per_run}, no step back")
