"""A sensor fed by another's channel (``inputs:``): an SCD4x told the BME680's pressure
reads CO2 right at altitude; the configuration says what can feed what, by key path."""

from __future__ import annotations

import textwrap

import pytest

from edge_agent.config import load_config
from edge_agent.errors import ConfigError
from edge_agent.node.hardware import SimulatedHardware
from edge_agent.node.sampler import Sampler
from edge_agent.node.store import BatchStore

NODE = """\
node: {{id: alp-1}}
mqtt: {{broker: "mqtt://127.0.0.1:1883"}}
sensors:
  - {{name: air, type: bme680, heater: {{duration: 30ms}}, sim: {{pressure: {air}}}}}
  - {{name: co2, type: scd4x, sim: {{co2: 420, pressure: 845}}{inputs}}}
"""


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def co2_read(tmp_path, inputs: str, air: float = 845.0) -> tuple[float, Sampler]:
    """The SCD4x's first CO2 after the BME680's first reading, at 845 hPa of air."""
    tmp_path.mkdir()
    path = tmp_path / "n.yaml"
    path.write_text(NODE.format(inputs=inputs, air=air))
    cfg = load_config(path)
    hw = SimulatedHardware(cfg)
    chip = Clock()
    hw.sims["co2"].clock = chip  # type: ignore[attr-defined]  # its 5 s results on the test's clock
    store = BatchStore(str(tmp_path / "q"))
    sampler = Sampler(cfg, store, hw.make)
    air, co2 = sampler.slots
    try:
        for slot in sampler.slots:
            sampler._bring_up(slot, 0.0)
        sampler.sample(air)  # the pressure, 845 hPa, 1,500 m up
        chip.t = 5.01
        sampler.sample(co2)
        return co2.channels["co2"].last[1], sampler
    finally:
        for slot in sampler.slots:
            slot.driver.close()
        hw.close()
        store.close()


def test_the_scd4x_told_the_bme680s_pressure_reads_co2_right(tmp_path):
    untold, _ = co2_read(tmp_path / "a", "")
    told, sampler = co2_read(tmp_path / "b", ", inputs: {pressure: air.pressure}")
    assert untold == round(420 * 845 / 1013)  # 17 % low
    assert told == 420.0
    assert sampler.slots[1].errors_by_kind == {}


@pytest.mark.parametrize(
    ("inputs", "says"),
    [
        (", inputs: {pressure: air.temperature}", "a channel in hPa (air.temperature is in °C)"),
        (", inputs: {pressure: nowhere.pressure}", "another configured sensor's channel (sensors: air)"),
        (", inputs: {pressure: co2.co2}", "another configured sensor's channel"),
        (", inputs: {pressure: air.altitude}", "an enabled channel of air"),
        (", inputs: {pressure: airpressure}", "SENSOR.CHANNEL"),
        (", inputs: {pressure: [air, pressure]}", "SENSOR.CHANNEL"),
        (", inputs: {humidity: air.humidity}", "sensors[1].inputs"),
    ],
)
def test_an_input_that_cannot_feed_is_refused_by_key_path(tmp_path, inputs, says):
    path = tmp_path / "n.yaml"
    path.write_text(NODE.format(inputs=inputs, air=845))
    with pytest.raises(ConfigError, match=r"sensors\[1\]\.inputs") as exc:
        load_config(path)
    assert says in str(exc.value)


def test_a_sensor_that_takes_no_input_says_so(tmp_path):
    path = tmp_path / "n.yaml"
    path.write_text(
        textwrap.dedent("""\
        node: {id: n}
        mqtt: {broker: "mqtt://127.0.0.1:1883"}
        sensors:
          - {name: air, type: bme680, inputs: {pressure: air.pressure}}
        """)
    )
    with pytest.raises(ConfigError, match=r"sensors\[0\]\.inputs: .*takes no input"):
        load_config(path)


def test_a_value_the_chip_cannot_take_is_counted_and_the_read_goes_on(tmp_path, caplog):
    """A pressure of 500 hPa (a BME680 reads 300 to 1,100) is outside what the SCD4x takes:
    counted as an ``input`` error and logged, and the CO2 is read all the same."""
    co2, sampler = co2_read(tmp_path / "c", ", inputs: {pressure: air.pressure}", air=500.0)
    assert co2 == round(420 * 845 / 1013)  # told nothing: the chip's own 1,013 hPa
    assert sampler.slots[1].errors_by_kind == {"input": 1}
    assert "event=input_refused sensor=co2 input=pressure from=air.pressure" in caplog.text
