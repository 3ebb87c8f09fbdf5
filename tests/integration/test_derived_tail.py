"""Every derived channel of a simulated node (`edge-agent run --simulate`) reaches
`edge-agent tail` through a real Mosquitto; `check-config` names a bad input by key path.

No gas sensor has a driver yet, so the AQHI here is configured from stand-in streams (the
PMSA003I's pm1_0, pm2_5 and pm10 feed its NO2, O3 and SO2 inputs, all in µg/m³): what is
tested is the path, not Hong Kong's air. The AQI's and AQHI's hours run 900 times faster
(`sim: {speed: 900}`, honoured with --simulate only), so an "hour" is 4 s."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import agent_cmd, wait_for_log

from edge_agent.dsp import aqhi, aqi

EXPECTED = {
    "aqi": {"aqi", "aqi_pm2_5", "pm2_5_nowcast", "aqi_pm10", "pm10_nowcast", "pm2_5_corrected"},
    "aqhi": {"aqhi", "aqhi_risk"},
    "use": {"energy_period", "co2e_period", "uncovered"},
}


def node_yaml(broker_url: str) -> str:
    return f"""\
node: {{id: derived-node}}
flush_interval: 1s
clock: {{hold_unsynced: 0s}}
mqtt: {{broker: "{broker_url}", topic_prefix: e2e}}
sensors:
  - {{name: air, type: bme680, interval: 500ms, heater: {{duration: 30ms}}, sim: {{humidity: 50.0}}}}
  - {{name: dust, type: pmsa003i, interval: 1s}}
  - {{name: mains, type: ina226, address: 0x41, interval: 200ms, shunt_ohms: 0.002, max_current: 20,
     sim: {{bus_voltage: 24.0, current: 7.5}}}}
derived:
  - {{name: aqi, kind: us_aqi, interval: 1s, correction: epa2021, sim: {{speed: 900}},
     inputs: {{pm2_5: dust.pm2_5, pm10: dust.pm10, humidity: air.humidity}}}}
  - {{name: aqhi, kind: hk_aqhi, interval: 1s, sim: {{speed: 900}},
     inputs: {{no2: dust.pm1_0, o3: dust.pm2_5, so2: dust.pm10, pm10: dust.pm10}}}}
  - {{name: use, kind: energy, period: 1s, emission_factor: 233, inputs: {{power: mains.power}}}}
"""


def tail_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


@pytest.mark.broker
def test_every_derived_channel_reaches_tail(broker, tmp_path):
    cfg = tmp_path / "node.yaml"
    cfg.write_text(node_yaml(broker.url))
    out, tail_err = tmp_path / "tail.out", tmp_path / "tail.err"
    tail = subprocess.Popen(
        agent_cmd("tail", "--broker", broker.url, "--json", "--prefix", "e2e", "--client-id", "derived-tail"),
        stdout=open(out, "wb"),
        stderr=open(tail_err, "wb"),
    )
    err = tmp_path / "agent.err"
    agent = None
    try:
        wait_for_log(tail, tail_err, lambda text: "event=subscribed" in text, timeout=15)
        agent = subprocess.Popen(
            agent_cmd("run", "--simulate", "--config", str(cfg), "--state-dir", str(tmp_path / "state")),
            stderr=open(err, "wb"),
        )

        def every_channel_arrived(_: str) -> bool:
            got = {(r["stream"], r["channel"]) for r in tail_rows(out)}
            return all((s, c) in got for s, chans in EXPECTED.items() for c in chans)

        # the PMSA003I warms up for 30 s; then two 4 s "hours" for the NowCast, three for the AQHI
        wait_for_log(tail, tail_err, every_channel_arrived, timeout=90)
    finally:
        if agent is not None:
            agent.terminate()
            assert agent.wait(timeout=30) == 0, err.read_text()
        tail.terminate()
        tail.wait(timeout=30)
    log = err.read_text()
    assert "Traceback" not in log and "event=sensor_down" not in log
    sealed = set(re.findall(r"event=batch_sealed stream=(\w+)", log))
    assert set(EXPECTED) <= sealed
    rows = tail_rows(out)
    by = {}
    for r in rows:
        if r["stream"] in EXPECTED:
            by.setdefault((r["stream"], r["channel"], r["t"]), r["value"])
    # the channels of one point agree with each other by the formulas
    for (stream, channel, t), value in by.items():
        if (stream, channel) == ("aqi", "pm2_5_nowcast"):
            assert by[("aqi", "aqi_pm2_5", t)] == aqi.sub_index("pm2_5", value)
        if (stream, channel) == ("aqhi", "aqhi_risk"):
            assert by[("aqhi", "aqhi", t)] == aqhi.band(value)
        if (stream, channel) == ("use", "energy_period"):
            assert by[("use", "co2e_period", t)] == pytest.approx(value * 0.233, abs=0.01)
            assert value <= 180 / 3600 + 0.01  # 180 W for at most one second
    full = [v for (s, c, _), v in by.items() if (s, c) == ("use", "energy_period")]
    assert max(full) == pytest.approx(180 / 3600, abs=0.01)


def test_check_config_names_a_derived_input_that_cannot_feed(tmp_path):
    bad = tmp_path / "node.yaml"
    bad.write_text(
        node_yaml("mqtt://127.0.0.1:1883").replace("pm2_5: dust.pm2_5, pm10", "pm2_5: air.gas, pm10")
    )
    out = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "check-config", str(bad)], capture_output=True, text=True
    )
    assert out.returncode == 2, out.stderr
    assert (
        "derived[0].inputs.pm2_5: expected a channel in µg/m³ for us_aqi's pm2_5 (air.gas is in Ω)"
        in out.stderr
    )
    assert "Traceback" not in out.stderr
    good = tmp_path / "good.yaml"
    good.write_text(node_yaml("mqtt://127.0.0.1:1883"))
    ok = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "check-config", str(good)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
