"""The test vectors: the batches behind tests/vectors/*.hex and *.json, and the files.

``python tests/vectors/make_vectors.py`` writes them next to this file; tests/test_wire.py
checks that the committed files are what ``build()`` makes, so a vector changes only
with this file. Nothing here reads a clock or an unseeded random source. A DEFLATE
stream depends on the zlib build, so for a deflated vector the tests compare the
inflated body, not the payload (docs/wire-format.md, "Test vectors", has the JSON schema).
"""

from __future__ import annotations

import json
import math
import random
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge_agent import wire
from edge_agent.errors import WireFormatError
from edge_agent.wire.format import KIND_OF

HERE = Path(__file__).resolve().parent
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000
C = wire.ChannelData


def _at(t0: int, period: int, slots: list[int]) -> tuple[int, ...]:
    return tuple(t0 + k * period for k in slots)


def _v1_v2_air() -> tuple[C, ...]:
    return (
        C("temperature", "°C", 0.01, (T0, T0 + 1000, T0 + 2000, T0 + 3500), (2150, 2151, 2149, -5)),
        C("gas", "Ω", 1.0, (T0 + 200,), (50000,), ((0, wire.QUALITY_INVALID),)),
    )


# Four days of hourly temperature and rain (0.1 degC, 0.1 mm): v3-hourly-seasonal's values.
WEATHER_T = [
    int(v)
    for v in (
        "51 48 48 46 51 44 55 68 78 88 95 111 116 123 128 131 129 121 119 112 99 87 72 60 "
        "53 51 50 47 52 47 54 70 80 89 96 113 118 122 130 132 131 122 122 114 100 89 74 60 "
        "55 52 50 50 52 48 57 71 80 89 97 112 118 125 133 135 133 124 122 115 102 90 76 61 "
        "55 52 52 49 54 48 58 71 83 92 98 115 121 126 132 135 135 125 124 114 101 89 77 62"
    ).split()
]
WEATHER_RAIN = [0] * 96
for _i, _v in ((7, 13), (8, 5), (9, 5), (30, 3), (31, 13), (44, 3), (80, 13)):
    WEATHER_RAIN[_i] = _v


def _v4_air() -> wire.Batch:
    """A deadband, a swinging door and a warming-up gas reading: a node that just started."""
    return wire.Batch(
        "lamp-0042",
        "air",
        8,
        T0,
        (
            # deadband 0.05 degC: the points kept are off the schedule's consecutive slots,
            # and the last one was read 120 ms late (a retry)
            C(
                "temperature",
                "°C",
                0.01,
                (T0, T0 + 4000, T0 + 5000, T0 + 11_120),
                (2150, 2157, 2143, 2151),
                reconstruction="hold",
                bound=0.05,
            ),
            # swinging door 0.25 %RH: interpolate between the points
            C(
                "humidity",
                "%",
                0.01,
                _at(T0, 1000, [0, 6, 11]),
                (4512, 4580, 4561),
                reconstruction="linear",
                bound=0.25,
            ),
            C(
                "gas",
                "Ω",
                1.0,
                _at(T0, 1000, [0, 1, 2]),
                (48210, 50130, 50180),
                ((0, wire.QUALITY_WARMING_UP),),
            ),
        ),
        flags=wire.FLAG_CLOCK_UNSYNCED,
        period_ms=1000,
        epoch=0x2F6B0C91,
    )


def _v4_power() -> wire.Batch:
    """A minute of an INA226 at 1 Hz, from the backlog: a predictor and form per channel."""
    rnd = random.Random(4)
    n = 60
    times = _at(T0, 1000, list(range(n)))
    bus = tuple(12_000 + rnd.randint(-25, 25) for _ in range(n))  # V at 1 mV: flat and noisy
    current = tuple(15_000 + 40 * i + rnd.randint(-30, 30) for i in range(n))  # A at 0.1 mA: a noisy ramp
    shunt = tuple(750 if i < 25 else 820 if i < 47 else 790 for i in range(n))  # mV at 1 uV: steps
    energy = tuple(182_500 + 5 * i * i // 2 for i in range(n))  # Wh at 1 mWh: a rising power
    kept = [0, 7, 19, 20, 33, 51]  # relative deadband 2 %: power held between these
    power = tuple(180_000 + rnd.randint(-9000, 9000) for _ in kept)
    ripple = tuple(rnd.randint(0, 4000) for _ in range(16))  # a custom channel in 1/3 mV
    return wire.Batch(
        "ina-7",
        "power",
        1234,
        T0,
        (
            C("bus_voltage", "V", 0.001, times, bus),
            C("current", "A", 0.0001, times, current),
            C("shunt_voltage", "mV", 0.001, times, shunt),
            C("energy", "Wh", 0.001, times, energy),
            C(
                "power",
                "W",
                0.001,
                _at(T0, 1000, kept),
                power,
                reconstruction="hold",
                bound=0.02,
                bound_relative=True,
            ),
            C(
                "ripple",
                "mV",
                1 / 3,
                times[:16],
                ripple,
                ((3, wire.QUALITY_OUT_OF_RANGE | wire.QUALITY_STUCK),),
            ),
        ),
        flags=wire.FLAG_HISTORICAL,
        period_ms=1000,
        epoch=0xA5E1D007,
    )


def _v4_weather() -> wire.Batch:
    """Four days hourly: a daily cycle (seasonal), rain (zero) and a binned humidity."""
    rnd = random.Random(9)
    humidity = [round(6000 - 1500 * math.sin(2 * math.pi * h / 24)) + rnd.randint(-40, 40) for h in range(96)]
    times = _at(T0, HOUR, list(range(96)))
    return wire.Batch(
        "roof-3",
        "weather",
        12,
        T0,
        (
            C("temperature", "°C", 0.1, times, tuple(WEATHER_T)),
            C("rain", "mm", 0.1, times, tuple(WEATHER_RAIN)),
            # every sample within 0.02 %RH (+ resolution / 2): bins of 5 steps of 0.01
            C("humidity", "%", 0.01, times, tuple(humidity), bin_width=5, bound=0.02),
        ),
        period_ms=HOUR,
        epoch=0x00000001,
    )


def _v4_deflate() -> wire.Batch:
    """Custom channels whose names DEFLATE shortens, a relative swinging door, flags."""
    times = _at(0, 250, list(range(40)))
    chs = tuple(
        C(f"cabinet_temperature_{i}", "K", 0.05, times, tuple(5860 + i + (j * 7 + i) % 5 for j in range(40)))
        for i in range(4)
    )
    door = C(
        "cabinet_door",
        "",
        1.0,
        _at(0, 250, [0, 13, 39]),
        (0, 1, 0),
        reconstruction="linear",
        bound=0.01,
        bound_relative=True,
    )
    return wire.Batch(
        "n",
        "cabinet",
        0,
        0,
        (*chs, door),
        flags=wire.FLAG_HISTORICAL | wire.FLAG_CLOCK_UNSYNCED,
        period_ms=250,
        epoch=0xFFFFFFFF,
    )


def _v4_coded_carry() -> wire.Batch:
    """A level with steps, a spike of 2**44 and back: the coded form's corners (a carry
    through a pending 0xff byte, 38 direct bits, signs after zero residuals)."""
    rnd = random.Random(33)  # found by searching seeds for a carry through a pending byte
    q, qs = 2000, []
    for i in range(64):
        q += rnd.choice((0, 0, 0, 1, -1, 2, -2, 5, -7, 300, -260))
        qs.append(q + (2**44 + 12345 if i == 40 else 0))
    return wire.Batch(
        "lab-1",
        "probe",
        77,
        T0,
        (C("level", "mm", 1.0, _at(T0, 1000, list(range(64))), tuple(qs)),),
        period_ms=1000,
        epoch=0x0BADCAFE,
    )


# name -> (what it shows, batch, version written, deflate)
def _v4_private() -> wire.Batch:
    """An INA226's power at privacy level aggregate: two 15-minute periods, rounded to 0.1 W."""
    q = 15 * 60_000
    ends = (T0 + q, T0 + 2 * q)
    return wire.Batch(
        "flat-7",
        "mains",
        3,
        T0 + q,
        (
            C("power.mean", "W", 0.1, ends, (1523, 3874)),
            C("power.min", "W", 0.1, ends, (1491, 1502)),
            C("power.max", "W", 0.1, ends, (1562, 21557)),
            C("power.count", "", 1.0, ends, (900, 900)),
        ),
        flags=1 << wire.FLAG_LEVEL_SHIFT,
        period_ms=q,
        epoch=0x5EED0001,
    )


VECTORS: dict[str, tuple[str, wire.Batch, int, bool]] = {
    "v1-two-channels": (
        "version 1: two known channels, a quality flag",
        wire.Batch("lamp-0042", "air", 7, T0, _v1_v2_air()),
        1,
        False,
    ),
    "v1-historical-empty-channel": (
        "version 1: flag historical, a channel without samples",
        wire.Batch("n", "power", 0, 0, (C("p", "W", 0.5, (), ()),), flags=wire.FLAG_HISTORICAL),
        1,
        False,
    ),
    "v2-air-schedule": (
        "version 2: v1-two-channels plus a custom channel on a 1 s schedule",
        wire.Batch(
            "lamp-0042",
            "air",
            7,
            T0,
            (*_v1_v2_air(), C("noise", "dB", 0.1, (T0, T0 + 5000, T0 + 9000), (450, 452, 449))),
            period_ms=1000,
        ),
        2,
        False,
    ),
    "v2-custom-deflate": (
        "version 2: custom channels with an f64 resolution, flags historical and deflate",
        wire.Batch(
            "n",
            "power",
            300,
            0,
            tuple(
                C(
                    f"pm_custom_channel_{x}",
                    "counts",
                    1 / 3,
                    _at(0, 250, list(range(40))),
                    (0, 2, 4, 1, 3) * 8,
                )
                for x in "abc"
            ),
            flags=wire.FLAG_HISTORICAL,
            period_ms=250,
        ),
        2,
        True,
    ),
    "v3-hourly-seasonal": (
        "version 3: the coded form with the seasonal and zero predictors",
        wire.Batch(
            "lamp-0042",
            "weather",
            12,
            T0,
            (
                C("temperature", "°C", 0.1, _at(T0, HOUR, list(range(96))), tuple(WEATHER_T)),
                C("rain", "mm", 0.1, _at(T0, HOUR, list(range(96))), tuple(WEATHER_RAIN)),
            ),
            period_ms=HOUR,
        ),
        3,
        False,
    ),
    "v4-air-hold": (
        (
            "version 4: hold and linear reconstructions with absolute bounds, irregular times, "
            "a time exception, a quality flag, flag clock_unsynced"
        ),
        _v4_air(),
        4,
        False,
    ),
    "v4-power-forms": (
        (
            "version 4: the predictors previous, linear, mean8 and trend8, the forms Simple-8b, "
            "runs, Rice and coded, a relative bound, a custom channel with an f64 resolution, "
            "flag historical"
        ),
        _v4_power(),
        4,
        False,
    ),
    "v4-weather-binned": (
        "version 4: the seasonal and zero predictors (coded), a binned channel",
        _v4_weather(),
        4,
        False,
    ),
    "v4-coded-carry": (
        (
            "version 4: the coded form with a carry through a pending 0xff byte, direct bits "
            "(a residual of 45 bits) and signs after zero residuals"
        ),
        _v4_coded_carry(),
        4,
        False,
    ),
    "v4-private-aggregate": (
        (
            "version 4: a private stream at level aggregate (flag bits 3-4 = 1): per 15-minute "
            "period the mean, min, max and count of a power channel"
        ),
        _v4_private(),
        4,
        False,
    ),
    "v4-cabinet-deflate": (
        (
            "version 4: flags historical, clock_unsynced and deflate, a relative bound on a "
            "linear reconstruction, custom channels, epoch 0xffffffff"
        ),
        _v4_deflate(),
        4,
        True,
    ),
}


def payload_of(batch: wire.Batch, version: int, deflate: bool) -> bytes:
    if version == 1:
        return wire.encode_v1(batch)
    return wire.encode(batch, deflate=deflate, version=version)


def document(about: str, payload: bytes) -> dict[str, Any]:
    """What a decoder makes of ``payload``, in the vectors' JSON schema (the spec's)."""
    b = wire.decode(payload)
    doc: dict[str, Any] = {"about": about, "node": b.node, "stream": b.stream, "seq": b.seq}
    doc["version"] = b.version
    doc["flags"] = b.flags & (wire.FLAG_HISTORICAL | wire.FLAG_CLOCK_UNSYNCED)
    if b.privacy != "raw":
        doc["privacy"] = b.privacy
    if b.version >= 2:
        doc["deflate"] = bool(payload[3] & wire.FLAG_DEFLATE)
    doc["t0_ms"] = b.t0_ms
    if b.version >= 2:
        doc["period_ms"] = b.period_ms
    if b.version >= 4:
        doc["epoch"] = b.epoch
    doc["channels"] = []
    for ch in b.channels:
        c: dict[str, Any] = {"name": ch.name, "unit": ch.unit}
        if b.version >= 2:
            c["kind"] = KIND_OF.get((ch.name, ch.unit), 0)
        c["resolution"] = ch.resolution
        if b.version == 1:
            c["encoding"] = ch.encoding
        if b.version >= 4:
            c["reconstruction"] = ch.reconstruction
            c["bound"] = ch.bound
            c["bound_relative"] = ch.bound_relative
        if b.version >= 2:
            c["bin_width"] = ch.bin_width
            c["predictor"] = wire.PREDICTORS[ch.predictor or 0]
            c["season"] = ch.season
            c["form"] = ch.form
        c["times_ms"] = list(ch.times_ms)
        c["values_q"] = list(ch.values_q)
        c["values"] = ch.values()
        c["flags"] = [list(f) for f in ch.flags]
        doc["channels"].append(c)
    return doc


def dumps(doc: dict[str, Any]) -> str:
    """JSON, a key a line and every list on one line."""

    def one(v: Any) -> str:
        return json.dumps(v, ensure_ascii=False)

    lines = ["{"]
    for i, (k, v) in enumerate(doc.items()):
        end = "," if i < len(doc) - 1 else ""
        if k != "channels":
            lines.append(f"  {one(k)}: {one(v)}{end}")
            continue
        lines.append(f'  "channels": [{"" if v else "]" + end}')
        for j, ch in enumerate(v):
            lines.append("    {")
            lines += [f"      {one(ck)}: {one(cv)}," for ck, cv in ch.items()]
            lines[-1] = lines[-1][:-1]
            lines.append("    }," if j < len(v) - 1 else "    }")
        if v:
            lines.append(f"  ]{end}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def decodes_to(payload: bytes, batch: wire.Batch) -> bool:
    """Whether ``payload`` holds ``batch``: exactly, but for binned channels, whose decoded
    values are within half a bin of the batch's. A payload of an older layout does not."""
    try:
        got = wire.decode(payload)
    except WireFormatError:
        return False
    if len(got.channels) != len(batch.channels):
        return False
    for g, c in zip(got.channels, batch.channels):
        if c.bin_width > 1 and all(abs(a - b) <= c.bin_width // 2 for a, b in zip(g.values_q, c.values_q)):
            c = replace(c, values_q=g.values_q)
        if g != c:
            return False
    return replace(got, channels=batch.channels) == batch


def committed(name: str) -> bytes | None:
    """The payload of a vector as committed, or None when there is none yet."""
    path = HERE / f"{name}.hex"
    return bytes.fromhex(path.read_text().strip()) if path.exists() else None


def build() -> dict[str, tuple[str, str]]:
    """name -> (the .hex file's text, the .json file's text). A deflated vector keeps its
    committed payload while that decodes to its batch: another zlib (or, for
    v2-custom-deflate, an older encoder's choice of predictor) writes other bytes for the
    same batch, and only decoding is normative."""
    out = {}
    for name, (about, batch, version, deflate) in VECTORS.items():
        payload = committed(name) if deflate else None
        if payload is None or not decodes_to(payload, batch):
            payload = payload_of(batch, version, deflate)
        out[name] = payload.hex() + "\n", dumps(document(about, payload))
    return out


def main() -> int:
    for name, (hex_text, json_text) in build().items():
        (HERE / f"{name}.hex").write_text(hex_text)
        (HERE / f"{name}.json").write_text(json_text)
        print(f"{name}: {len(hex_text) // 2} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
