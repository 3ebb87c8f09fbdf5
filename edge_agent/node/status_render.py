"""The status facts (status_facts.py) as the page a technician opens and as Prometheus text.

The page is one HTML document with its style inline: no script, font or style from
anywhere, so it works on a ladder with no internet and no broker; it refreshes itself every
few seconds. Every name and value in it is escaped (a sensor's name comes from the
configuration, an error text from a chip). The metrics follow the text exposition format
(version 0.0.4): counters end in ``_total``, a sensor's and a stream's figures carry
``sensor`` and ``stream`` labels, and every number of the health message has a series
(``unmapped`` lists those that would not: the tests keep it empty).
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Iterator
from typing import Any

from edge_agent.node.status_facts import shown

PREFIX = "edge_agent_"
Leaf = tuple[tuple[str, ...], float]

# (path with "*" where a label's value stands, metric, type, label names); first match wins
SERIES: list[tuple[tuple[str, ...], str, str, tuple[str, ...]]] = [
    (("uptime_s",), "uptime_seconds", "gauge", ()),
    (("system_uptime_s",), "system_uptime_seconds", "gauge", ()),
    (("cpu_temp_c",), "cpu_temperature_celsius", "gauge", ()),
    (("load", "*"), "load_average", "gauge", ("minutes",)),
    (("memory", "*"), "memory_bytes", "gauge", ("kind",)),
    (("throttled", "*"), "throttled", "gauge", ("flag",)),
    (("disk", "free_bytes"), "disk_free_bytes", "gauge", ()),
    (("disk", "total_bytes"), "disk_total_bytes", "gauge", ()),
    (("disk_writes", "durable_commits"), "durable_commits_total", "counter", ()),
    (("disk_writes", "write_bytes"), "write_bytes_total", "counter", ()),
    (("disk_writes", "*"), "disk_writes_per_hour", "gauge", ("figure",)),
    (("store", "batches"), "queue_batches", "gauge", ()),
    (("store", "bytes"), "queue_bytes", "gauge", ()),
    (("store", "max_bytes"), "queue_max_bytes", "gauge", ()),
    (("store", "oldest_age_s"), "queue_oldest_age_seconds", "gauge", ()),
    (("store", "losses", "*", "*"), "store_lost_batches_total", "counter", ("stream", "reason")),
    (("store", "unstored_since_start", "*"), "unstored_batches_total", "counter", ("stream",)),
    (("store", "recovery", "*"), "store_recovery", "gauge", ("figure",)),
    (("store", "wal_loss", "*"), "store_wal_loss", "gauge", ("figure",)),
    (("uplink", "connected"), "uplink_connected", "gauge", ()),
    (("uplink", "inflight"), "uplink_inflight", "gauge", ()),
    (("uplink", "no_subscribers"), "uplink_no_subscribers", "gauge", ()),
    (("uplink", "since"), "uplink_state_since_timestamp_seconds", "gauge", ()),
    (("uplink", "last_ack"), "uplink_last_ack_timestamp_seconds", "gauge", ()),
    *(
        (("uplink", f), f"uplink_{f}_total", "counter", ())
        for f in (
            "reconnects",
            "connect_failures",
            "delivered",
            "delivered_historical",
            "failed_acks",
            "unrouted_acks",
        )
    ),
    (("sensors", "*", "up"), "sensor_up", "gauge", ("sensor",)),
    (("sensors", "*", "samples"), "sensor_samples_total", "counter", ("sensor",)),
    (("sensors", "*", "missed"), "sensor_missed_total", "counter", ("sensor",)),
    (("sensors", "*", "errors", "*"), "sensor_errors_total", "counter", ("sensor", "kind")),
    (("values", "*", "channels", "*", "value"), "channel_value", "gauge", ("sensor", "channel")),
    (("values", "*", "channels", "*", "age_s"), "channel_age_seconds", "gauge", ("sensor", "channel")),
    (("values", "*", "channels", "*", "stale"), "channel_stale", "gauge", ("sensor", "channel")),
    (("values", "*", "channels", "*", "quality"), "channel_quality", "gauge", ("sensor", "channel")),
    (("values", "*", "interval"), "sensor_interval_seconds", "gauge", ("sensor",)),
    (("clock", "synchronized"), "clock_synchronized", "gauge", ()),
    (("ok",), "ok", "gauge", ()),
    (("snapshot_age_s",), "snapshot_age_seconds", "gauge", ()),
]
SKIPPED = {("time",)}  # the moment of the message itself: a scrape has its own


def leaves(facts: dict) -> Iterator[Leaf]:
    """Every number of the facts, with its path; true/false as 1/0, states as what they say."""
    up = dict(facts)
    up["uplink"] = {**facts["uplink"], "connected": facts["uplink"]["state"] == "connected"}
    up["sensors"] = {n: {**s, "up": s["state"] == "up"} for n, s in facts["sensors"].items()}

    def walk(path: tuple[str, ...], v: Any) -> Iterator[Leaf]:
        if isinstance(v, dict):
            for k, x in v.items():
                yield from walk((*path, str(k)), x)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                yield from walk((*path, ("1", "5", "15")[i] if path == ("load",) else str(i)), x)
        elif isinstance(v, bool | int | float) and not (isinstance(v, float) and math.isnan(v)):
            yield path, float(v)

    yield from walk((), up)


def _match(path: tuple[str, ...]) -> tuple[str, str, dict[str, str]] | None:
    for pattern, name, kind, labels in SERIES:
        if len(pattern) == len(path) and all(p in ("*", x) for p, x in zip(pattern, path)):
            return name, kind, dict(zip(labels, (x for p, x in zip(pattern, path) if p == "*")))
    return None


def unmapped(facts: dict) -> list[tuple[str, ...]]:
    """Paths of numbers that have no series (the tests keep this empty)."""
    return [p for p, _ in leaves(facts) if p not in SKIPPED and _match(p) is None]


def _number(v: float) -> str:
    """A sample's value: whole numbers as integers (a byte count exact), others as repr."""
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics(facts: dict) -> str:
    """The Prometheus text format of the facts."""
    series: dict[str, tuple[str, list[str]]] = {}
    info = {k: str(facts.get(k, "")) for k in ("node", "version", "core", "config_hash")}
    info["epoch"] = str(facts["store"]["epoch"])
    series["info"] = ("gauge", ["{" + ",".join(f'{k}="{_label(v)}"' for k, v in info.items()) + "} 1"])
    for path, value in leaves(facts):
        m = None if path in SKIPPED else _match(path)
        if m is None:
            continue
        name, kind, labels = m
        if path[0] == "values" and path[-1] == "value":
            labels["unit"] = facts["values"][path[1]]["channels"][path[3]]["unit"]
        text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        series.setdefault(name, (kind, []))[1].append(
            ("{" + text + "}" if text else "") + f" {_number(value)}"
        )
    out = []
    for name, (kind, lines) in series.items():
        out.append(f"# TYPE {PREFIX}{name} {kind}")
        out += [f"{PREFIX}{name}{line}" for line in lines]
    return "\n".join(out) + "\n"


STYLE = (
    "body{font:15px/1.4 system-ui,sans-serif;margin:1em;max-width:60em}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .6em;border-bottom:1px solid #ccc;"
    "text-align:left}.stale{color:#a40;font-weight:bold}.bad{color:#b00;font-weight:bold}"
    ".ok{color:#070;font-weight:bold}h2{font-size:1.1em;margin:1em 0 .2em}"
)


def _bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "-"


def _ago(t: float | None) -> str:
    return "never" if t is None else f"{max(0.0, time.time() - t):.0f} s ago"


def _row(*cells: object, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<tr{attr}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"


def _actions(names: list[str]) -> str:
    """A button per action: a form's POST, which the browser sends again with the token once
    it has asked for it (HTTP Basic auth), with no script."""
    if not names:
        return ""
    e = html.escape
    forms = "".join(
        f'<form method="post" action="/actions/{e(n)}"><button>{e(n)}</button></form>' for n in names
    )
    return f"<h2>Actions (the node's token)</h2>{forms}"


def page(facts: dict, refresh: int = 5) -> str:
    """The technician's page: a verdict, every sensor's last values, queue, link, clock, disk."""
    e = html.escape
    verdict = (
        '<p class="ok" id="verdict">OK</p>'
        if facts["ok"]
        else '<p class="bad" id="verdict">' + "<br>".join(e(p) for p in facts["problems"]) + "</p>"
    )
    rows = []
    for name, s in facts["values"].items():
        errors = ", ".join(f"{k} {v}" for k, v in facts["sensors"][name]["errors"].items()) or "none"
        if not s["channels"]:
            rows.append(_row(name, s["state"], "-", "no reading yet", "", errors, cls="stale"))
        for ch, v in s["channels"].items():
            value = shown(v)
            age = f"{v['age_s']:g} s" + (" (stale)" if v["stale"] else "")
            rows.append(_row(name, s["state"], ch, value, age, errors, cls="stale" if v["stale"] else ""))
    st, up, clock, disk = facts["store"], facts["uplink"], facts["clock"], facts["disk"] or {}
    queue = "not open" if st["batches"] is None else f"{st['batches']} batches, {st['bytes']} B"
    oldest = "-" if st["oldest_age_s"] is None else f"{st['oldest_age_s']:g} s"
    commission = facts.get("commission")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta http-equiv="refresh" content="{refresh}">'
        f"<title>{e(facts['node'])}: edge-agent</title><style>{STYLE}</style></head><body>"
        f"<h1>{e(facts['node'])}</h1>{verdict}"
        f"<h2>Sensors</h2><table id=sensors><tr><th>sensor</th><th>state</th><th>channel</th>"
        f"<th>value</th><th>age</th><th>errors</th></tr>{''.join(rows)}</table>"
        f"<h2>Queue</h2><table id=queue>{_row('depth', queue)}{_row('oldest', oldest)}"
        f"{_row('losses', st['losses'] or 'none')}</table>"
        f"<h2>Uplink</h2><table id=uplink>{_row('broker', up['broker'])}"
        f"{_row('state', up['state'] + ' since ' + _ago(up['since']))}{_row('last PUBACK', _ago(up['last_ack']))}"
        f"{_row('delivered', up['delivered'])}</table>"
        f"<h2>Node</h2><table id=node>{_row('clock', 'synchronised' if clock['synchronized'] else 'NOT synchronised')}"
        f"{_row('disk free', _bytes(disk.get('free_bytes')) + ' of ' + _bytes(disk.get('total_bytes')))}{_row('version', facts['version'] + ' (' + facts['core'] + ')')}"
        f"{_row('commissioning', 'never run here' if not commission else commission['summary'])}"
        f"</table>{_actions(facts.get('actions') or [])}</body></html>"
    )
