"""Register-level simulator of the Bosch BME680 (datasheet BST-BME680-DS001).

It models what a driver sees over I2C: the chip ID (0xD0 = 0x61) and variant
(0xF0 = 0x00, the "gas low" BME680), the calibration registers (0x89..0xA1,
0xE1..0xEE, and res_heat_val/range and range_switching_error at 0x00/0x02/0x04),
the control registers, soft reset (0xE0 <- 0xB6), the I2C write protocol of
register/data pairs with an auto-incrementing read pointer, and forced-mode
measurement: writing mode 01 to ctrl_meas starts a conversion whose duration
follows the oversampling settings and the gas heater's wait time; the status
register shows ``measuring`` until then, and ``new_data`` after. The raw ADC
values are found by inverting Bosch's compensation formulas for the configured
calibration, so a driver that compensates correctly returns the values the
simulator was set to, within the compensation's own rounding.

The humidity calibration packs H1 and H2 in shared nibbles of 0xE2; the
simulated part has both low nibbles zero, the case in which the Adafruit
driver's unpacking of them agrees with Bosch's.

Faults for tests: those of every simulator (``drivers.sim.chip``). The BME680 sends no
CRC, so ``corrupt_next`` has nothing to act on.
"""

from __future__ import annotations

import functools
import struct
import threading
import time
from collections.abc import Callable

from drivers.sim.chip import SimChip
from drivers.sim.profiles import Wave

_REG_RES_HEAT_VAL = 0x00
_REG_RES_HEAT_RANGE = 0x02
_REG_RANGE_SW_ERR = 0x04
_REG_MEAS_STATUS = 0x1D
_REG_PRESS_MSB = 0x1F
_REG_TEMP_MSB = 0x22
_REG_HUM_MSB = 0x25
_REG_GAS_R_MSB = 0x2A
_REG_RES_HEAT_0 = 0x5A
_REG_GAS_WAIT_0 = 0x64
_REG_CTRL_GAS_0 = 0x70
_REG_CTRL_GAS_1 = 0x71
_REG_CTRL_HUM = 0x72
_REG_CTRL_MEAS = 0x74
_REG_CONFIG = 0x75
_REG_CHIP_ID = 0xD0
_REG_SOFT_RESET = 0xE0
_REG_VARIANT = 0xF0

CHIP_ID = 0x61
_SOFT_RESET_CMD = 0xB6
_OS_CYCLES = (0, 1, 2, 4, 8, 16, 16, 16)
_WRITABLE = set(range(0x50, 0x76)) | {_REG_SOFT_RESET}

# Gas range lookup tables of the BME680 (Bosch BME68x API, "gas low" variant).
_LOOKUP_TABLE_1 = (
    2147483647.0,
    2147483647.0,
    2147483647.0,
    2147483647.0,
    2147483647.0,
    2126008810.0,
    2147483647.0,
    2130303777.0,
    2147483647.0,
    2147483647.0,
    2143188679.0,
    2136746228.0,
    2147483647.0,
    2126008810.0,
    2147483647.0,
    2147483647.0,
)
_LOOKUP_TABLE_2 = (
    4096000000.0,
    2048000000.0,
    1024000000.0,
    512000000.0,
    255744255.0,
    127110228.0,
    64000000.0,
    32258064.0,
    16016016.0,
    8000000.0,
    4000000.0,
    2000000.0,
    1000000.0,
    500000.0,
    250000.0,
    125000.0,
)

# The calibration of the simulated part (plausible values of a real chip).
CALIBRATION = {
    "T1": 25939,
    "T2": 26341,
    "T3": 3,
    "P1": 36174,
    "P2": -10360,
    "P3": 88,
    "P4": 6785,
    "P5": -150,
    "P6": 30,
    "P7": 50,
    "P8": -3043,
    "P9": -1964,
    "P10": 30,
    "H1": 832,
    "H2": 1024,
    "H3": 0,
    "H4": 45,
    "H5": 20,
    "H6": 120,
    "H7": -100,
    "GH1": -30,
    "GH2": -12000,
    "GH3": 18,
    "res_heat_range": 1,
    "res_heat_val": 40,
    "range_sw_err": 0,
}

DEFAULT_ENVIRONMENT = {
    "temperature": Wave(21.0),
    "humidity": Wave(45.0),
    "pressure": Wave(1013.25),
    "gas": Wave(50000.0),
}


def _t_fine(adc_t: float, c: dict) -> int:
    var1 = (adc_t / 8) - (c["T1"] * 2)
    var2 = (var1 * c["T2"]) / 2048
    var3 = ((var1 / 2) * (var1 / 2)) / 4096
    var3 = (var3 * c["T3"] * 16) / 16384
    return int(var2 + var3)


def _temperature(t_fine: int) -> float:
    return (((t_fine * 5) + 128) / 256) / 100


def _pressure(adc_p: float, t_fine: int, c: dict) -> float:
    var1 = (t_fine / 2) - 64000
    var2 = ((var1 / 4) * (var1 / 4)) / 2048
    var2 = (var2 * c["P6"]) / 4
    var2 = var2 + (var1 * c["P5"] * 2)
    var2 = (var2 / 4) + (c["P4"] * 65536)
    var1 = ((((var1 / 4) * (var1 / 4)) / 8192) * (c["P3"] * 32) / 8) + ((c["P2"] * var1) / 2)
    var1 = var1 / 262144
    var1 = ((32768 + var1) * c["P1"]) / 32768
    calc = 1048576 - adc_p
    calc = (calc - (var2 / 4096)) * 3125
    calc = (calc / var1) * 2
    var1 = (c["P9"] * (((calc / 8) * (calc / 8)) / 8192)) / 4096
    var2 = ((calc / 4) * c["P8"]) / 8192
    var3 = (((calc / 256) ** 3) * c["P10"]) / 131072
    calc += (var1 + var2 + var3 + (c["P7"] * 128)) / 16
    return calc / 100


def _humidity(adc_h: float, t_fine: int, c: dict) -> float:
    temp_scaled = ((t_fine * 5) + 128) / 256
    var1 = (adc_h - (c["H1"] * 16)) - ((temp_scaled * c["H3"]) / 200)
    var2 = (
        c["H2"]
        * (
            ((temp_scaled * c["H4"]) / 100)
            + (((temp_scaled * ((temp_scaled * c["H5"]) / 100)) / 64) / 100)
            + 16384
        )
    ) / 1024
    var3 = var1 * var2
    var4 = c["H6"] * 128
    var4 = (var4 + ((temp_scaled * c["H7"]) / 100)) / 16
    var5 = ((var3 / 16384) * (var3 / 16384)) / 1024
    var6 = (var4 * var5) / 2
    return min(max((((var3 + var6) / 1024) * 1000) / 4096 / 1000, 0.0), 100.0)


def _gas(adc_g: int, gas_range: int, c: dict) -> float:
    var1 = ((1340 + (5 * c["range_sw_err"])) * _LOOKUP_TABLE_1[gas_range]) / 65536
    var2 = ((adc_g * 32768) - 16777216) + var1
    var3 = (_LOOKUP_TABLE_2[gas_range] * var1) / 512
    return (var3 + (var2 / 2)) / var2


def _bisect(f: Callable[[int], float], target: float, lo: int, hi: int, increasing: bool) -> int:
    """The integer in [lo, hi] whose f is closest to target, for a monotonic f."""
    a, b = lo, hi
    while b - a > 1:
        mid = (a + b) // 2
        if (f(mid) < target) == increasing:
            a = mid
        else:
            b = mid
    return min((a, b), key=lambda x: abs(f(x) - target))


def calibration_bytes(c: dict) -> tuple[bytes, bytes]:
    """The two calibration blocks as the chip stores them: 0x8A..0xA1 and 0xE1..0xEE."""
    block1 = struct.pack(
        "<hbBHhbBhhbbHhhBB",
        c["T2"],
        c["T3"],
        0,
        c["P1"],
        c["P2"],
        c["P3"],
        0,
        c["P4"],
        c["P5"],
        c["P7"],
        c["P6"],
        0,
        c["P8"],
        c["P9"],
        c["P10"],
        0,
    )
    e2 = ((c["H2"] & 0x0F) << 4) | (c["H1"] & 0x0F)
    block2 = struct.pack(
        "<BBBbbbBbHhbb",
        (c["H2"] >> 4) & 0xFF,
        e2,
        (c["H1"] >> 4) & 0xFF,
        c["H3"],
        c["H4"],
        c["H5"],
        c["H6"],
        c["H7"],
        c["T1"],
        c["GH2"],
        c["GH1"],
        c["GH3"],
    )
    return block1, block2


class Bme680Sim(SimChip):
    """A simulated BME680 to attach to a SimulatedSMBus.

    ``environment`` maps channel name (temperature °C, humidity %RH, pressure hPa,
    gas Ω) to a Wave; ``set(...)`` changes it. ``wall`` gives the Unix time the
    environment is evaluated at; ``clock`` is the monotonic clock of the
    conversion timing.
    """

    ENVIRONMENT = DEFAULT_ENVIRONMENT

    def __init__(
        self,
        environment: dict[str, Wave] | None = None,
        *,
        calibration: dict | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        **_driver_options,
    ) -> None:
        super().__init__(environment, wall=wall)
        self.cal = dict(CALIBRATION if calibration is None else calibration)
        self.clock = clock
        self._lock = threading.Lock()
        self._pointer = 0
        self._regs = bytearray(256)
        self._done_at: float | None = None
        self._pending: bytes = b""
        self._load_nvm()

    def power_on(self) -> None:
        with self._lock:
            self._pointer = 0
            self._load_nvm()

    # --- the I2C side ----------------------------------------------------------------------
    def i2c_write(self, data: bytes) -> None:
        with self._lock:
            self.check_transfer()
            if not data:
                return
            self._pointer = data[0]
            # Multi-byte writes are register/data pairs (datasheet 6.2.1).
            for i in range(0, len(data) - 1, 2):
                self._write_reg(data[i], data[i + 1])

    def i2c_read(self, length: int) -> bytes:
        with self._lock:
            self.check_transfer()
            self._settle()
            out = bytes(self._regs[(self._pointer + i) & 0xFF] for i in range(length))
            self._pointer = (self._pointer + length) & 0xFF
            return out

    # --- the chip ------------------------------------------------------------------------
    def _load_nvm(self) -> None:
        regs = self._regs
        regs[:] = bytes(256)
        b1, b2 = calibration_bytes(self.cal)
        regs[0x8A : 0x8A + len(b1)] = b1
        regs[0xE1 : 0xE1 + len(b2)] = b2
        regs[_REG_RES_HEAT_VAL] = self.cal["res_heat_val"] & 0xFF
        regs[_REG_RES_HEAT_RANGE] = (self.cal["res_heat_range"] & 0x3) << 4
        regs[_REG_RANGE_SW_ERR] = (self.cal["range_sw_err"] & 0xF) << 4
        regs[_REG_CHIP_ID] = CHIP_ID
        regs[_REG_VARIANT] = 0x00
        self._done_at = None

    def _write_reg(self, reg: int, value: int) -> None:
        if reg == _REG_SOFT_RESET:
            if value == _SOFT_RESET_CMD:
                self._load_nvm()
            return
        if reg not in _WRITABLE:
            return
        self._regs[reg] = value
        if reg == _REG_CTRL_MEAS and value & 0x03 == 0x01:
            self._start_forced()

    def _conversion_seconds(self) -> tuple[float, bool]:
        meas = self._regs[_REG_CTRL_MEAS]
        cycles = (
            _OS_CYCLES[(meas >> 5) & 7]
            + _OS_CYCLES[(meas >> 2) & 7]
            + _OS_CYCLES[self._regs[_REG_CTRL_HUM] & 7]
        )
        tph_us = cycles * 1963 + 477 * 4 + 477 * 5 + 500 + 1000
        run_gas = bool(self._regs[_REG_CTRL_GAS_1] & 0x10)
        heater_on = not self._regs[_REG_CTRL_GAS_0] & 0x08
        wait = self._regs[_REG_GAS_WAIT_0]
        gas_ms = (wait & 0x3F) * (1, 4, 16, 64)[wait >> 6] if run_gas and heater_on else 0
        return tph_us / 1e6 + gas_ms / 1e3, run_gas and heater_on

    def _start_forced(self) -> None:
        duration, gas = self._conversion_seconds()
        self._pending = self._encode(self.measure(), gas)
        self._done_at = self.clock() + duration
        self._regs[_REG_MEAS_STATUS] = 0x20 | (0x40 if gas else 0)  # measuring

    def _settle(self) -> None:
        if self._done_at is not None and self.clock() >= self._done_at:
            self._regs[_REG_PRESS_MSB : _REG_PRESS_MSB + len(self._pending)] = self._pending
            self._regs[_REG_MEAS_STATUS] = 0x80  # new_data, gas_meas_index 0
            self._regs[_REG_CTRL_MEAS] &= 0xFC  # back to sleep mode
            self._done_at = None

    def _heater_stable(self) -> bool:
        """The heater reaches its target when it is set to >= 200 °C and waits >= 30 ms."""
        wait = self._regs[_REG_GAS_WAIT_0]
        wait_ms = (wait & 0x3F) * (1, 4, 16, 64)[wait >> 6]
        return self._regs[_REG_RES_HEAT_0] >= self._res_heat(200) and wait_ms >= 30

    def _res_heat(self, target: float, ambient: float = 25.0) -> int:
        c = self.cal
        var1 = (c["GH1"] / 16.0) + 49.0
        var2 = ((c["GH2"] / 32768.0) * 0.0005) + 0.00235
        var3 = c["GH3"] / 1024.0
        var5 = var1 * (1.0 + var2 * target) + var3 * ambient
        return int(
            3.4 * (var5 * (4 / (4 + c["res_heat_range"])) * (1 / (1 + c["res_heat_val"] * 0.002)) - 25)
        )

    def _encode(self, env: dict[str, float], gas: bool) -> bytes:
        """Data registers 0x1F..0x2B for the environment: inverted compensation."""
        c = self.cal
        target_temp = env["temperature"]
        adc_t = _bisect(lambda a: _temperature(_t_fine(a, c)), target_temp, 0, (1 << 20) - 1, True)
        t_fine = _t_fine(adc_t, c)
        adc_p = _bisect(lambda a: _pressure(a, t_fine, c), env["pressure"], 0, (1 << 20) - 1, False)
        adc_h = _bisect(lambda a: _humidity(a, t_fine, c), env["humidity"], 0, 0xFFFF, True)
        out = bytearray(13)
        out[0:3] = bytes(((adc_p >> 12) & 0xFF, (adc_p >> 4) & 0xFF, (adc_p & 0xF) << 4))
        out[3:6] = bytes(((adc_t >> 12) & 0xFF, (adc_t >> 4) & 0xFF, (adc_t & 0xF) << 4))
        out[6:8] = struct.pack(">H", adc_h)
        if gas:
            gas_range, adc_g = self._gas_adc(env["gas"])
            flags = 0x20 | (0x10 if self._heater_stable() else 0)
            out[11] = adc_g >> 2
            out[12] = ((adc_g & 0x3) << 6) | flags | gas_range
        return bytes(out)

    def _gas_adc(self, ohms: float) -> tuple[int, int]:
        """The gas range and 10-bit ADC value closest to a resistance in ohms."""
        candidates = []
        for r in range(16):
            adc = _bisect(functools.partial(_gas, gas_range=r, c=self.cal), ohms, 1, 1023, False)
            candidates.append((abs(_gas(adc, r, self.cal) - ohms) / ohms, r, adc))
        _, r, adc = min(candidates)  # the smallest error; on a tie, the lowest range
        return r, adc
