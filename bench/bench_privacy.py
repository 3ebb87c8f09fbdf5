"""Bytes per day that a private power stream costs at each privacy level, side by side.

    .venv/bin/python bench/bench_privacy.py [--days N] [--json FILE]

One simulated household (tests/test_privacy_detector.py's: a base load with noise, a
fridge, kettle, washing machine, oven, television and lights) read at 1 Hz by an INA226's
power channel (resolution 1 mW), through the node's own pipeline, open period and encoder
(version 4, DEFLATE when shorter), sealed every flush interval. For each level: batches and
payload bytes per day, and the bytes of the MQTT 5 PUBLISH packets that carry them (topic
``edge/flat-7/data/mains``, QoS 1, no properties). Counted, not timed: the figures are the
same on every machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_privacy_detector import DAY, household, power

from edge_agent.config import parse_config
from edge_agent.node.open_batch import (
    ChannelPipeline,
    batch_encoder,
    privacy_encoding,
    take_channels,
)

TOPIC = "edge/flat-7/data/mains"
CONFIG = """\
node: {{id: flat-7}}
mqtt: {{broker: "mqtt://127.0.0.1:1883"}}
sensors:
  - name: mains
    type: ina226
    shunt_ohms: 0.002
    max_current: 20
    channels: {{bus_voltage: {{enabled: false}}, shunt_voltage: {{enabled: false}}, current: {{enabled: false}}{energy}}}
{privacy}
"""
CASES = [
    ("raw, 1 Hz", "", 10),
    ("raw, 1 Hz", "", 60),
    ("aggregate, 15 min", "    privacy: {level: aggregate, period: 15min}", 10),
    ("aggregate, 15 min, round 1 W", "    privacy: {level: aggregate, period: 15min, round: 1}", 10),
    ("total, 1 day", "    privacy: {level: total, period: 1d}", 10),
    ("total, 1 day, round 1 Wh", "    privacy: {level: total, period: 1d, round: 1}", 10),
]


def publish_bytes(payload: int) -> int:
    """An MQTT 5 PUBLISH, QoS 1: fixed header, topic, packet id, property length, payload."""
    remaining = 2 + len(TOPIC) + 2 + 1 + payload
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16384 else 3
    return 1 + length_bytes + remaining


def cost(series: list[float], privacy: str, flush: int, energy: bool) -> dict:
    sc = parse_config(
        yaml.safe_load(CONFIG.format(privacy=privacy, energy="" if energy else ", energy: {enabled: false}")),
        "b",
    ).sensors[0]
    pipes = [ChannelPipeline(c, privacy=sc.privacy) for c in sc.channels]
    days = (len(series) - 1) / DAY
    if sc.privacy is None:
        series = series[:-1]  # the sample after the last day closes a private stream's period only
    flags, period_ms = privacy_encoding(sc.privacy, sc.interval)
    sizes = []
    wh = 0.0
    for t, p in enumerate(series):
        wh += p / 3600.0
        for pipe in pipes:
            pipe.push(float(t), p if pipe.cfg.name == "power" else wh)
        if (t + 1) % flush == 0 or t == len(series) - 1:
            channels = take_channels(pipes, 0)
            if channels:
                encode = batch_encoder(
                    "flat-7", "mains", channels, flags=flags, period_ms=period_ms, version=4, epoch=7
                )
                sizes.append(len(encode(len(sizes))))
    return {
        "batches_per_day": round(len(sizes) / days, 1),
        "payload_bytes_per_day": round(sum(sizes) / days),
        "mqtt_bytes_per_day": round(sum(map(publish_bytes, sizes)) / days),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=2, help="days simulated (default 2)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()
    # one sample more than the days: it closes the last day's period
    series = power(household(args.days + 1), (args.days + 1) * DAY)[: args.days * DAY + 1]
    rows = []
    print(
        f"{'level':32} {'flush':>6} {'channels':>13} {'batches/day':>12} {'payload B/day':>14} {'MQTT B/day':>11}"
    )
    for name, privacy, flush in CASES:
        for energy in (False, True):
            r = cost(series, privacy, flush, energy) | {"level": name, "flush_s": flush, "energy": energy}
            rows.append(r)
            chans = "power, energy" if energy else "power"
            print(
                f"{name:32} {flush:>5}s {chans:>13} {r['batches_per_day']:>12} "
                f"{r['payload_bytes_per_day']:>14,} {r['mqtt_bytes_per_day']:>11,}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
