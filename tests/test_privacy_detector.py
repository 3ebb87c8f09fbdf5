"""The privacy test of issue 18: a step-change (appliance on/off) detector run over what
leaves the node for a simulated household. It finds the events in ``raw``; at ``total``
over a day it does no better than chance, and no detector can: two households whose
appliances ran at other times of the day send the same bytes.

The household (``household``) is deterministic: a base load with a little noise, and
appliance runs (a fridge's cycles, a kettle, a washing machine, an oven, a television,
lights), each an on and an off event. What leaves the node is what the node's own code
makes of the 1 Hz power channel (its pipeline, open period and encoder): payloads,
decoded, and rebuilt at 1 Hz as the backbone could (every sample; a period's mean held
over it; a day's total as its mean power held over the day). Nothing reads a clock.

Chance, precisely: a detector that places its g detections at independent uniform times
over the T seconds finds an event (a detection within ``TOL`` s of it, a window of
w = 2 TOL + 1 s) with probability 1 - (1 - w / T)^g, so that is its expected recall.
"""

from __future__ import annotations

import random

import yaml

from edge_agent import wire
from edge_agent.config import parse_config
from edge_agent.node.open_batch import ChannelPipeline, batch_encoder, privacy_encoding, take_channels

DAY = 86400
DAYS = 4
STEP = 40.0  # W: a change between two seconds above this is an event to the detector
TOL = 10  # s: a detection this close to an event finds it
MARGIN = 0.02  # recall above chance that still counts as chance (one event in 50)
Run = tuple[int, int, float]  # (start s, duration s, W)


def household(days: int, seed: int = 18) -> list[Run]:
    """Appliance runs, each inside its day (600 s clear of midnight)."""
    runs: list[Run] = []
    for d in range(days):
        rng = random.Random(seed * 1000 + d)
        day = d * DAY
        for i in range(18):  # the fridge's compressor
            runs.append((day + 1200 + i * 4600 + rng.randint(0, 600), 600 + rng.randint(-60, 60), 90.0))
        for hour in (7, 13, 19):  # the kettle
            runs.append((day + hour * 3600 + rng.randint(0, 3000), 150 + rng.randint(0, 60), 2000.0))
        runs.append((day + 9 * 3600 + rng.randint(0, 6 * 3600), 3600, 500.0))  # the washing machine
        runs.append((day + 18 * 3600 + rng.randint(0, 1800), 2700, 2200.0))  # the oven
        runs.append((day + 20 * 3600 + rng.randint(0, 600), 3 * 3600, 110.0))  # the television
        runs.append((day + 17 * 3600 + rng.randint(0, 1200), 5 * 3600, 60.0))  # lights
    return runs


def mirrored(runs: list[Run]) -> list[Run]:
    """The same runs at other times: each day's schedule reversed (same durations, power)."""
    return [((s // DAY) * DAY + DAY - (s % DAY) - dur, dur, w) for s, dur, w in runs]


def power(runs: list[Run], seconds: int) -> list[float]:
    steps = [0.0] * (seconds + 1)
    for start, dur, w in runs:
        steps[start] += w
        steps[start + dur] -= w
    out, level = [], 120.0
    for t in range(seconds):
        level += steps[t]
        out.append(level + ((t * 7919) % 997) / 997 * 6.0 - 3.0)  # base load, +-3 W of noise
    return out


def events(runs: list[Run]) -> list[int]:
    return sorted({t for s, dur, _ in runs for t in (s, s + dur)})


CONFIG = """\
node: {{id: flat-7}}
mqtt: {{broker: "mqtt://127.0.0.1:1883"}}
sensors:
  - name: mains
    type: ina226
    shunt_ohms: 0.002
    max_current: 20
    channels: {{bus_voltage: {{enabled: false}}, shunt_voltage: {{enabled: false}}, current: {{enabled: false}},
                energy: {{enabled: false}}}}
{privacy}
"""


def leaves(series: list[float], privacy: str) -> list[bytes]:
    """The payloads the node seals for this power series at 1 Hz (sealed every hour)."""
    sc = parse_config(yaml.safe_load(CONFIG.format(privacy=privacy)), "n").sensors[0]
    pipe = ChannelPipeline(sc.channels[0], privacy=sc.privacy)
    flags, period_ms = privacy_encoding(sc.privacy, sc.interval)
    out = []
    for t, p in enumerate([*series, series[-1]]):  # one more sample closes the last period
        pipe.push(float(t), p)
        if (t + 1) % 3600 == 0 or t == len(series):
            channels = take_channels([pipe], 0)
            if channels:
                encode = batch_encoder(
                    "flat-7", "mains", channels, flags=flags, period_ms=period_ms, version=4, epoch=1
                )
                out.append(encode(len(out)))
    return out


def rebuilt(payloads: list[bytes], seconds: int) -> list[float]:
    """The power at each second as the backbone can tell it from the payloads."""
    out = [0.0] * seconds
    for b in map(wire.decode, payloads):
        period = b.period_ms // 1000
        for c in b.channels:
            for t_ms, v in zip(c.times_ms, c.values(), strict=True):
                t = t_ms // 1000
                if b.privacy == "raw":
                    out[t : t + 1] = [v][: seconds - t]  # (the sample after the last second: left out)
                elif c.name in ("power.mean", "power.total"):
                    mean = v if c.name == "power.mean" else v * 3600 / period
                    out[t - period : t] = [mean] * period
    return out


def detect(series: list[float]) -> list[int]:
    return [t for t in range(1, len(series)) if abs(series[t] - series[t - 1]) > STEP]


def recall(found: list[int], truth: list[int]) -> float:
    hits, j = 0, 0
    for e in truth:
        while j < len(found) and found[j] < e - TOL:
            j += 1
        hits += j < len(found) and found[j] <= e + TOL
    return hits / len(truth)


def chance(g: int, seconds: int) -> float:
    return 1 - (1 - (2 * TOL + 1) / seconds) ** g


def test_the_detector_finds_the_events_in_raw():
    runs = household(1)
    truth = events(runs)
    series = power(runs, DAY)
    assert recall(detect(series), truth) == 1.0  # the detector on the household itself
    payloads = leaves(series, "")
    found = detect(rebuilt(payloads, DAY))
    r = recall(found, truth)
    assert len(truth) >= 40 and r > 0.8 and r > chance(len(found), DAY) + 0.5


def test_at_total_over_a_day_it_does_no_better_than_chance_and_nothing_can():
    seconds = DAYS * DAY
    runs = household(DAYS)
    truth = events(runs)
    series = power(runs, seconds)
    payloads = leaves(series, "    privacy: {level: total, period: 1d, round: 1}")
    assert [len(wire.decode(p).channels[0].times_ms) for p in payloads] == [1] * DAYS  # a point a day
    found = detect(rebuilt(payloads, seconds))
    assert len(found) <= DAYS - 1  # a step at most at each midnight
    assert recall(found, truth) <= chance(len(found), seconds) + MARGIN
    # another household: the same appliances at other times of each day. Its events are
    # not these, yet the node sends the very same bytes: whatever a detector says from
    # them, it says for both, so it cannot find the events of one without the other's
    other = mirrored(runs)
    assert len(set(events(other)) & set(truth)) < len(truth) // 10
    series_other = power(other, seconds)
    assert leaves(series_other, "    privacy: {level: total, period: 1d, round: 1}") == payloads
    assert leaves(series_other[:DAY], "") != leaves(series[:DAY], "")  # raw tells them apart


def test_at_aggregate_the_times_are_gone_but_not_which_quarter_hours_had_events():
    seconds = DAYS * DAY
    runs = household(DAYS)
    truth = events(runs)
    payloads = leaves(power(runs, seconds), "    privacy: {level: aggregate, period: 15min}")
    found = detect(rebuilt(payloads, seconds))
    assert recall(found, truth) <= chance(len(found), seconds) + MARGIN  # to the second: chance
    # but a quarter hour whose max and min differ by more than a step had an event: what
    # aggregate does not hide (docs/privacy.md)
    spread: dict[int, float] = {}
    for b in map(wire.decode, payloads):
        ch = {c.name: c for c in b.channels}
        for t_ms, hi, lo in zip(ch["power.max"].times_ms, ch["power.max"].values(), ch["power.min"].values()):
            spread[t_ms // 1000 // 900 - 1] = hi - lo
    flagged = sum(1 for e in truth if spread.get(e // 900, 0.0) > STEP)
    assert flagged / len(truth) > 0.8
