"""The explicit registry of sensor types: one line per driver, and its simulator.

The configuration loader reads everything type-specific from the classes registered here
(drivers/base.py says what a driver declares), so adding a type is its modules and these lines.
"""

from __future__ import annotations

from drivers.base import Sensor
from drivers.bme680 import Bme680
from drivers.ina2xx import Ina219, Ina226
from drivers.pmsa003i import Pmsa003i
from drivers.s0 import S0Meter
from drivers.scd4x import Scd4x
from drivers.sim.bme680 import Bme680Sim
from drivers.sim.ina2xx import Ina219Sim, Ina226Sim
from drivers.sim.pmsa003i import Pmsa003iSim
from drivers.sim.s0 import S0MeterSim
from drivers.sim.scd4x import Scd4xSim

SENSOR_TYPES: dict[str, type[Sensor]] = {
    Bme680.TYPE: Bme680,
    Ina219.TYPE: Ina219,
    Ina226.TYPE: Ina226,
    Pmsa003i.TYPE: Pmsa003i,
    Scd4x.TYPE: Scd4x,
    S0Meter.TYPE: S0Meter,
}

# type -> simulator class; each takes the simulated environment and the driver's options;
# its ENVIRONMENT names the inputs a configuration's sim: block may set
SIMULATORS = {
    Bme680.TYPE: Bme680Sim,
    Ina219.TYPE: Ina219Sim,
    Ina226.TYPE: Ina226Sim,
    Pmsa003i.TYPE: Pmsa003iSim,
    Scd4x.TYPE: Scd4xSim,
    S0Meter.TYPE: S0MeterSim,
}
