"""`edge-agent probe` and `edge-agent read`, for technicians on site (here on simulated buses)."""

from __future__ import annotations

import json
import subprocess
import textwrap

from conftest import agent_cmd

CONFIG = textwrap.dedent("""\
    node: {id: n}
    mqtt: {broker: "mqtt://127.0.0.1:1883"}
    sensors:
      - {name: air, type: bme680, sim: {temperature: 18.5}}
      - {name: mains, type: ina226, address: 0x41, shunt_ohms: 0.002, max_current: 20,
         sim: {bus_voltage: 24.0, current: 3.0}}
      - {name: solar, type: ina219, address: 0x40, bus: 3}
""")


def run(*args):
    return subprocess.run(agent_cmd(*args), capture_output=True, text=True)


def test_probe_names_chips_by_their_registers(tmp_path):
    cfg = tmp_path / "n.yaml"
    cfg.write_text(CONFIG)
    out = run("probe", "--simulate", "--config", str(cfg), "--json")
    assert out.returncode == 0, out.stderr
    found = {(f["bus"], f["address"]): f for f in json.loads(out.stdout)}
    assert found[(1, "0x77")]["chip"] == "bme680" and "0x61" in found[(1, "0x77")]["evidence"]
    assert found[(1, "0x41")]["chip"] == "ina226" and "0x5449" in found[(1, "0x41")]["evidence"]
    assert found[(3, "0x40")]["chip"] == "ina219"
    only3 = json.loads(run("probe", "--simulate", "--config", str(cfg), "--bus", "3", "--json").stdout)
    assert [f["address"] for f in only3] == ["0x40"]
    text = run("probe", "--simulate", "--config", str(cfg)).stdout
    assert "i2c-1 0x77  bme680" in text


def test_probe_without_a_bus_says_so():
    out = run("probe", "--bus", "250")
    assert out.returncode == 1 and "cannot open /dev/i2c-250" in out.stderr


def test_read_one_sensor_with_units(tmp_path):
    cfg = tmp_path / "n.yaml"
    cfg.write_text(CONFIG)
    out = run("read", "mains", "--simulate", "--config", str(cfg), "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["type"] == "ina226" and r["values"]["bus_voltage"]["unit"] == "V"
    assert abs(r["values"]["bus_voltage"]["value"] - 24.0) < 0.002
    assert abs(r["values"]["current"]["value"] - 3.0) < 0.002
    text = run("read", "air", "--simulate", "--config", str(cfg)).stdout
    assert "air temperature = 18.5" in text and "°C" in text
    missing = run("read", "nope", "--simulate", "--config", str(cfg))
    assert missing.returncode == 2 and "no sensor named 'nope'" in missing.stderr
    hw = run("read", "air", "--config", str(cfg))  # no /dev/i2c-1 on this machine
    assert hw.returncode == 1 and "air (bme680 at 0x77 on i2c-1)" in hw.stderr
