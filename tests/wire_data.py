"""Test data of the wire format: the golden vectors (tests/vectors/*.hex with their decoded
contents as .json), a daily series, and a checksum put right behind edited bytes."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

from edge_agent import wire
from edge_agent.wire.crc32c import crc32c

VECTORS = sorted((Path(__file__).parent / "vectors").glob("*.hex"))
TWO_CHANNELS = Path(__file__).parent / "vectors" / "v1-two-channels.hex"
V2_AIR = Path(__file__).parent / "vectors" / "v2-air-schedule.hex"


def vector(path: Path) -> tuple[bytes, dict[str, Any]]:
    """A vector's payload and its decoded contents."""
    return bytes.fromhex(path.read_text().strip()), json.loads(path.with_suffix(".json").read_text())


def batch_from_json(doc: dict[str, Any]) -> wire.Batch:
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
                c["encoding"],
            )
            for c in doc["channels"]
        ),
        flags=doc["flags"],
        version=doc["version"],
        period_ms=doc.get("period_ms", 1),
    )


def hourly_days(days: int) -> list[int]:
    """Hourly temperatures (0.1 degC steps) with a daily cycle that repeats, slowly drifting."""
    rnd = random.Random(11)
    profile = [round(60 * math.sin(2 * math.pi * h / 24)) + rnd.randint(-25, 25) for h in range(24)]
    return [150 + profile[h % 24] + h // 50 + rnd.choice((-1, 0, 0, 1)) for h in range(24 * days)]


def recrc(body: bytes) -> bytes:
    """``body`` with its checksum: damage behind it reaches the decoder's parser."""
    return body + crc32c(body).to_bytes(4, "little")
