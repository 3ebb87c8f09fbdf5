"""What the node's status page, its metrics and ``edge-agent status`` show: the health
message's figures, each channel's last value with its age, the link's history, and a verdict.

Two halves, one per thread. ``Snapshots.take`` runs on the sampler's thread (from the
agent's tick, at most once a second) and copies what the sampler and the uplink own into
plain values; ``facts`` runs on the status server's thread, with its own connection to the
queue, and never touches the sampler's objects. A snapshot is replaced whole, never
changed, so the server reads one consistent picture without a lock.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from typing import Any

from edge_agent import __version__
from edge_agent.config import AgentConfig
from edge_agent.files import TooLarge, read_at_most, replace_wiped
from edge_agent.node.health import HealthReport
from edge_agent.node.store import BatchStore

STALE_INTERVALS = 3  # a value older than this many sample intervals (and a second) is stale
COMMISSION_FILE = "commission.json"  # in the state directory: the last `edge-agent commission`
COMMISSION_MAX = 64 * 1024  # bytes of it read


@dataclass(frozen=True)
class Snapshot:
    """The sampler's and the uplink's state at one moment, as plain values."""

    mono: float
    sampler: dict
    values: dict
    uplink: dict
    link_since: float | None  # Unix time the link went up or down, as first seen
    last_ack: float | None  # Unix time the delivered count last went up (a PUBACK)
    last_seal_mono: float
    flush_interval: float
    store_open: bool


def sensor_values(sampler: Any) -> dict:
    """Per sensor: its type, interval, state, and each channel's last reading (mono, value,
    unit, quality), on the sampler's thread."""
    out = {}
    for slot in sampler.slots:
        channels = {}
        for name, pipe in slot.channels.items():
            if pipe.last is not None:
                mono, value, quality = pipe.last  # a value that is no number (NaN) as None: JSON has none
                number = value if math.isfinite(value) else None
                channels[name] = {"value": number, "unit": pipe.cfg.unit, "mono": mono, "quality": quality}
        out[slot.cfg.name] = {
            "type": slot.cfg.type,
            "interval": slot.cfg.interval,
            "state": slot.state,
            "channels": channels,
        }
    return out


def shown(v: dict) -> str:
    """A channel's value with its unit, as the page and `edge-agent status` print it."""
    return "not a number" if v["value"] is None else f"{v['value']:g} {v['unit']}"


def uplink_part(uplink: Any) -> dict:
    """The uplink's figures of the health message: its own (on its thread) and the status
    page's (read from the sampler's thread: plain ints and a length)."""
    return {
        "state": "connected" if uplink.connected else "disconnected",
        "broker": uplink.broker.url,
        "reconnects": uplink.reconnects,
        "connect_failures": uplink.connect_failures,
        "delivered": uplink.delivered,
        "delivered_historical": uplink.delivered_historical,
        "failed_acks": uplink.failed_acks,
        "unrouted_acks": uplink.unrouted_acks,  # PUBACK 0x10: kept, sent again
        "no_subscribers": uplink.no_subscribers,  # so now: one batch at a time until one is back
        "inflight": len(uplink.inflight),
    }


class Snapshots:
    """Takes snapshots on the sampler's thread and keeps the link's history between them."""

    def __init__(self) -> None:
        self.latest: Snapshot | None = None
        self._link: tuple[bool, float] | None = None
        self._acks: tuple[int, float | None] = (0, None)

    def take(self, sampler: Any, uplink: Any, cfg: AgentConfig, store_open: bool) -> Snapshot:
        now, wall = time.monotonic(), time.time()
        up = uplink_part(uplink)
        connected = up["state"] == "connected"
        if self._link is None or self._link[0] != connected:
            self._link = (connected, wall)
        if up["delivered"] != self._acks[0]:
            self._acks = (up["delivered"], wall)
        self.latest = Snapshot(
            mono=now,
            sampler=sampler.health_part(),
            values=sensor_values(sampler),
            uplink=up,
            link_since=self._link[1],
            last_ack=self._acks[1],
            last_seal_mono=sampler.last_seal_cycle,
            flush_interval=cfg.flush_interval,
            store_open=store_open,
        )
        return self.latest


def _values(snap: Snapshot, now: float) -> dict:
    out = {}
    for name, sensor in snap.values.items():
        limit = STALE_INTERVALS * sensor["interval"] + 1.0
        channels = {}
        for ch, v in sensor["channels"].items():
            age = max(0.0, now - v["mono"])
            stale = age > limit or sensor["state"] != "up"
            channels[ch] = {
                **{k: v[k] for k in ("value", "unit", "quality")},
                "age_s": round(age, 1),
                "stale": stale,
            }
        out[name] = {**{k: sensor[k] for k in ("type", "interval", "state")}, "channels": channels}
    return out


def problems(report: dict, snap: Snapshot, now: float) -> list[str]:
    """What makes ``edge-agent status`` exit non-zero: a sensor not up, a queue growing while
    the link is down (the sampler seals, nothing leaves), a queue that is not open, a broker
    that takes the batches for nobody (PUBACK 0x10: the backbone's workers are not there)."""
    out = [
        f"sensor {name} is {s['state']}"
        for name, s in sorted(report["sensors"].items())
        if s["state"] != "up"
    ]
    sealing = now - snap.last_seal_mono <= 2 * snap.flush_interval + 1.0
    queued = report["store"]["batches"] or 0
    if snap.uplink["state"] != "connected" and sealing and queued > 0:
        out.append(f"queue growing with the link down ({queued} batches)")
    if not snap.store_open:
        out.append("the queue is not open (the disk is full): nothing is stored")
    if snap.uplink.get("no_subscribers"):
        out.append("the broker has no subscriber for the data: batches are kept until one is back")
    return out


def keep_commission(state_dir: str, report: dict) -> None:
    """Keep a commission report (node, passed, checks) in the state directory, stamped with
    the time and version, where the page shows it; owned as the directory is (run as root,
    it is still the agent's to read). Raises OSError."""
    path = os.path.join(state_dir, COMMISSION_FILE)
    kept = {**report, "at": round(time.time(), 3), "version": __version__}
    replace_wiped(path, json.dumps(kept, ensure_ascii=False).encode(), 0o640)
    if os.geteuid() == 0:
        owner = os.stat(state_dir)
        os.chown(path, owner.st_uid, owner.st_gid)


def commission_from_facts(facts: dict) -> dict:
    """The page's "commission" action: the checks of `edge-agent commission` as the running
    agent sees them (it owns the sensors: none is opened a second time). Each sensor up with
    every channel fresh; the queue open; the clock synchronised; the broker connected and
    acknowledging (a PUBACK since the link came up, or nothing yet to send)."""
    checks = []
    for name, s in facts["values"].items():
        stale = [ch for ch, v in s["channels"].items() if v["stale"]]
        ok = s["state"] == "up" and bool(s["channels"]) and not stale
        read = ", ".join(f"{ch} {shown(v)}" for ch, v in s["channels"].items()) or "no reading"
        hint = "" if ok else "check its wiring, address and power; `edge-agent read` shows one reading"
        checks.append({"name": f"sensor {name}", "ok": ok, "detail": f"{s['state']}: {read}", "hint": hint})
    st, up = facts["store"], facts["uplink"]
    open_ = st["batches"] is not None
    checks.append(
        {
            "name": "store",
            "ok": open_,
            "detail": f"{st['batches']} batches waiting" if open_ else "not open (the disk is full)",
            "hint": "" if open_ else "free space on the card",
        }
    )
    synced = facts["clock"]["synchronized"]
    checks.append(
        {
            "name": "clock",
            "ok": synced,
            "detail": "synchronised" if synced else "not synchronised",
            "hint": "" if synced else "check NTP (timedatectl) and the network",
        }
    )
    connected = up["state"] == "connected"
    acked = up["last_ack"] is not None and (up["since"] is None or up["last_ack"] >= up["since"])
    ok = connected and (acked or not st["batches"])
    checks.append(
        {
            "name": "broker",
            "ok": ok,
            "detail": f"{up['state']} to {up['broker']}; "
            + (
                f"last PUBACK {time.time() - up['last_ack']:.0f} s ago" if up["last_ack"] else "no PUBACK yet"
            ),
            "hint": ""
            if ok
            else "the log's uplink events say why (edge-agent status, journalctl -u edge-agent)",
        }
    )
    return {
        "node": facts["node"],
        "passed": all(c["ok"] for c in checks),
        "checks": checks,
        "source": "status page",
    }


def last_commission(state_dir: str) -> dict | None:
    """The last report ``edge-agent commission`` kept, with a one-line summary; None when
    none was kept (or it cannot be read: a damaged file is no report)."""
    try:
        report = json.loads(read_at_most(os.path.join(state_dir, COMMISSION_FILE), COMMISSION_MAX))
        checks = report["checks"]
        failed = [str(c["name"]) for c in checks if not c["ok"]]
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(report["at"])))
    except (OSError, TooLarge, ValueError, KeyError, TypeError):
        return None
    verdict = f"passed, {len(checks)} checks" if not failed else f"FAILED: {', '.join(failed)}"
    return {**report, "summary": f"{verdict} ({when})"}


def facts(report: HealthReport, snap: Snapshot, store: BatchStore | None) -> dict:
    """Everything the page, the metrics and ``status --json`` show, on the server's thread."""
    now = time.monotonic()
    out = report.build(sampler=snap.sampler, uplink=dict(snap.uplink), store=store)
    out["uplink"].update(
        {
            "since": snap.link_since,
            "last_ack": snap.last_ack,
        }
    )
    out["values"] = _values(snap, now)
    out["snapshot_age_s"] = round(now - snap.mono, 1)
    out["commission"] = last_commission(report.cfg.state_dir)
    out["problems"] = problems(out, snap, now)
    out["ok"] = not out["problems"]
    return out
