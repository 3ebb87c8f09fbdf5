"""`edge-agent probe` and `edge-agent read`, for technicians on site (here on simulated buses)."""

from __future__ import annotations

import json
import subprocess
import textwrap

from helpers import agent_cmd

CONFIG = textwrap.dedent("""\
    node: {id: n}
    mqtt: {broker: "mqtt://127.0.0.1:1883"}
    sensors:
      - {name: air, type: bme680, sim: {temperature: 18.5}}
      - {name: mains, type: ina226, address: 0x41, shunt_ohms: 0.002, max_current: 20,
         sim: {bus_voltage: 24.0, current: 3.0}}
      - {name: solar, type: ina219, address: 0x40, bus: 3}
      - {name: co2, type: scd4x}
""")

METER = textwrap.dedent("""\
    node: {id: n}
    mqtt: {broker: "mqtt://127.0.0.1:1883"}
    sensors:
      - {name: meter, type: s0, pin: 5, sim: {power: 3600}}
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
    # the SCD4x has no ID register: it answers get_serial_number, three CRC-checked words
    assert found[(1, "0x62")]["chip"] == "scd4x"
    assert found[(1, "0x62")]["evidence"] == "serial number 0xbeef12345678 (get_serial_number, CRC-8 valid)"
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


def test_read_a_gpio_meter_on_simulated_pins(tmp_path):
    cfg = tmp_path / "m.yaml"
    cfg.write_text(METER)
    out = run("read", "meter", "--simulate", "--config", str(cfg), "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["type"] == "s0" and set(r["values"]) == {"power", "energy", "pulses"}
    assert r["values"]["energy"]["unit"] == "Wh"  # like an INA226's: one unit per quantity
    text = run("read", "meter", "--simulate", "--config", str(cfg))
    assert text.returncode == 0 and "meter energy = " in text.stdout and " Wh" in text.stdout
    assert "kWh" not in text.stdout


def test_read_a_gpio_meter_without_gpio_says_so(tmp_path):
    cfg = tmp_path / "m.yaml"
    cfg.write_text(METER)
    out = run("read", "meter", "--config", str(cfg))  # this machine has no GPIO chip (and no /dev/i2c-0)
    assert out.returncode == 1, out.stderr
    assert "edge-agent read: meter (s0 at GPIO 5): no GPIO" in out.stderr
    assert "Traceback" not in out.stderr and "i2c" not in out.stderr


def test_read_waits_for_the_scd4x_first_result(tmp_path, monkeypatch, capsys):
    """The chip has nothing to give for 5 s after it starts measuring: read waits for it."""
    from drivers import registry
    from drivers.sim.scd4x import Scd4xSim
    from edge_agent.cli import main

    made = []

    class Scd4xOnQueries(Scd4xSim):
        """The chip's time moves one second per data-ready query, not with the wall clock:
        its first result is there at the fifth query, and the next one five queries later."""

        def __init__(self, *args, **kwargs):
            self.t = 0.0
            super().__init__(*args, clock=lambda: self.t, **kwargs)
            self.not_ready = 0
            made.append(self)

        def i2c_write(self, data):
            if data[:2] == b"\xe4\xb8":  # get_data_ready_status
                self.t += 1.0
                self.not_ready += self.conversions == 0 and self._available() <= 0
            super().i2c_write(data)

    monkeypatch.setitem(registry.SIMULATORS, "scd4x", Scd4xOnQueries)
    cfg = tmp_path / "n.yaml"
    cfg.write_text(CONFIG)
    assert main(["read", "co2", "--simulate", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "co2 co2 = 420 ppm" in out and "co2 humidity = 40 %" in out
    (sim,) = made
    assert sim.not_ready == 4 and sim.conversions == 1  # polled until the first result, read once
