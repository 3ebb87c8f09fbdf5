"""Test data of the wire format: the golden vectors (tests/vectors/*.hex with their decoded
contents as .json, made by tests/vectors/make_vectors.py), a daily series, and a checksum
put right behind edited bytes."""

from __future__ import annotations

import importlib.util
import json
import math
import random
from pathlib import Path
from types import ModuleType
from typing import Any

from edge_agent import wire
from edge_agent.wire.crc32c import crc32c

VECTOR_DIR = Path(__file__).parent / "vectors"
VECTORS = sorted(VECTOR_DIR.glob("*.hex"))
TWO_CHANNELS = VECTOR_DIR / "v1-two-channels.hex"
V2_AIR = VECTOR_DIR / "v2-air-schedule.hex"
V4_AIR = VECTOR_DIR / "v4-air-hold.hex"


def make_vectors() -> ModuleType:
    """tests/vectors/make_vectors.py, the generator of the vectors (not a package)."""
    spec = importlib.util.spec_from_file_location("make_vectors", VECTOR_DIR / "make_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def vector(path: Path) -> tuple[bytes, dict[str, Any]]:
    """A vector's payload and its decoded contents."""
    return bytes.fromhex(path.read_text().strip()), json.loads(path.with_suffix(".json").read_text())


def batch_from_json(doc: dict[str, Any]) -> wire.Batch:
    """The Batch a vector's JSON describes (docs/wire-format.md, "Test vectors": the fields
    a version does not carry are absent and take their defaults)."""
    return wire.Batch(
        doc["node"],
        doc["stream"],
        doc["seq"],
        doc["t0_ms"],
        tuple(
            wire.ChannelData(
                c["name"],
                c["unit"],
                c["resolution"],
                tuple(c["times_ms"]),
                tuple(c["values_q"]),
                tuple(tuple(f) for f in c["flags"]),
                bin_width=c.get("bin_width", 1),
                predictor=wire.PREDICTORS.index(c["predictor"]) if "predictor" in c else None,
                season=c.get("season", 0),
                reconstruction=c.get("reconstruction", "every"),
                bound=c.get("bound", 0.0),
                bound_relative=c.get("bound_relative", False),
            )
            for c in doc["channels"]
        ),
        flags=doc["flags"] | wire.LEVELS.index(doc.get("privacy", "raw")) << wire.FLAG_LEVEL_SHIFT,
        version=doc["version"],
        period_ms=doc.get("period_ms", 1),
        epoch=doc.get("epoch", 0),
    )


def hourly_days(days: int) -> list[int]:
    """Hourly temperatures (0.1 degC steps) with a daily cycle that repeats, slowly drifting."""
    rnd = random.Random(11)
    profile = [round(60 * math.sin(2 * math.pi * h / 24)) + rnd.randint(-25, 25) for h in range(24)]
    return [150 + profile[h % 24] + h // 50 + rnd.choice((-1, 0, 0, 1)) for h in range(24 * days)]


def recrc(body: bytes) -> bytes:
    """``body`` with its checksum: damage behind it reaches the decoder's parser."""
    return body + crc32c(body).to_bytes(4, "little")
