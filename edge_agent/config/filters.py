"""A channel's filter chain: the ``filters:`` lists, validated into StageConfig (see edge_agent.dsp)."""

from __future__ import annotations

from typing import Any

from edge_agent.config.document import Document
from edge_agent.config.model import StageConfig
from edge_agent.dsp import LOSSY, MAX_POLY, MAX_WINDOW, STAGE_KINDS

_FILTER_KEYS = {  # filter type -> (allowed keys, required keys)
    "calibrate": ({"coefficients", "offset", "scale"}, set()),
    "range": ({"low", "high", "action"}, {"low", "high"}),
    "hampel": ({"window", "k"}, set()),
    "median": ({"window"}, {"window"}),
    "mean": ({"window"}, {"window"}),
    "ema": ({"alpha"}, {"alpha"}),
    "kalman": ({"process_noise", "measurement_noise"}, {"process_noise", "measurement_noise"}),
    "throttle": ({"interval"}, {"interval"}),
    "deadband": ({"width", "relative", "max_interval"}, {"width"}),
    "swing": ({"deviation", "max_interval"}, {"deviation"}),
}


def parse_filters(doc: Document, raw: Any, path: str) -> list[StageConfig]:
    """A list of filters, in order; a lossy stage (deadband, swing) only as the last."""
    if not isinstance(raw, list):
        raise doc.fail(path, "a list of filters", raw)
    out = []
    for i, item in enumerate(raw):
        p = f"{path}[{i}]"
        if not isinstance(item, dict) or "type" not in item:
            raise doc.fail(p, "a mapping with a 'type' (one of " + ", ".join(STAGE_KINDS) + ")", item)
        kind = item["type"]
        if not isinstance(kind, str) or kind not in _FILTER_KEYS:
            raise doc.fail(f"{p}.type", "one of " + ", ".join(STAGE_KINDS), kind)
        allowed, required = _FILTER_KEYS[kind]
        doc.mapping(item, p, allowed | {"type"}, required)
        params = _params(doc, kind, item, p)
        if kind in LOSSY and i != len(raw) - 1:
            raise doc.fail(p, "a lossy stage (deadband, swing) only as the last filter", show_got=False)
        out.append(StageConfig(kind, params))
    return out


def _params(doc: Document, kind: str, item: dict, p: str) -> tuple[float, ...]:
    def num(key: str, default: Any = None, **kw: Any) -> float:
        return float(doc.number(item.get(key, default), f"{p}.{key}", **kw))

    if kind in ("median", "mean"):
        return (num("window", low=1, high=MAX_WINDOW, integer=True),)
    if kind == "hampel":
        w = num("window", 7, low=3, high=MAX_WINDOW, integer=True)
        if int(w) % 2 == 0:
            raise doc.fail(f"{p}.window", "an odd window", int(w))
        return (w, num("k", 3.0, low=0.0, low_open=True))
    if kind == "ema":
        return (num("alpha", low=0.0, high=1.0, low_open=True),)
    if kind == "kalman":
        return (num("process_noise", low=0.0), num("measurement_noise", low=0.0, low_open=True))
    if kind == "calibrate":
        if "coefficients" in item and ("offset" in item or "scale" in item):
            raise doc.fail(p, "either coefficients or offset/scale, not both", show_got=False)
        if "coefficients" not in item:
            return (num("offset", 0.0), num("scale", 1.0))
        coeffs = item["coefficients"]
        if not isinstance(coeffs, list) or not 1 <= len(coeffs) <= MAX_POLY:
            raise doc.fail(
                f"{p}.coefficients", f"a list of 1 to {MAX_POLY} numbers (c0 + c1*x + ...)", coeffs
            )
        return tuple(float(doc.number(c, f"{p}.coefficients[{j}]")) for j, c in enumerate(coeffs))
    if kind == "range":
        low, high = num("low"), num("high")
        if low > high:
            raise doc.fail(f"{p}.high", f"at least low ({low:g})", item["high"])
        action = item.get("action", "reject")
        if action not in ("reject", "clamp"):
            raise doc.fail(f"{p}.action", "reject or clamp", action)
        return (low, high, 1.0 if action == "clamp" else 0.0)
    if kind == "throttle":
        return (doc.duration(item["interval"], f"{p}.interval"),)
    if kind == "deadband":
        return (
            num("width", low=0.0),
            1.0 if doc.boolean(item.get("relative", False), f"{p}.relative") else 0.0,
            doc.duration(item.get("max_interval", 0), f"{p}.max_interval", positive=False),
        )
    return (
        num("deviation", low=0.0),  # swing
        doc.duration(item.get("max_interval", 0), f"{p}.max_interval", positive=False),
    )
