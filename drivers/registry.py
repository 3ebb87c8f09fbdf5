"""The explicit registry of sensor types: one line per driver, and its simulator."""

from __future__ import annotations

from drivers.base import Sensor
from drivers.bme680 import Bme680
from drivers.sim.bme680 import Bme680Sim

SENSOR_TYPES: dict[str, type[Sensor]] = {
    Bme680.TYPE: Bme680,
}

SIMULATORS = {
    Bme680.TYPE: Bme680Sim,
}
