"""The two sections of a channel that the encoder searches: its times as slots of the
batch's schedule, and its values as the smallest block of any predictor in any form.

These are the pure-Python twins of the compiled core's ``times_section`` and
``value_block`` (the same bytes; property tests hold them equal). edge_agent.wire.kernels
binds the one in use, and falls back to these where numbers pass the core's int64.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from edge_agent.wire.format import MAX_PER_BYTE, PREDICTOR_SEASONAL, PREDICTOR_ZERO, SHAPE_CODED
from edge_agent.wire.packing import pack_residuals, pack_simple8b
from edge_agent.wire.predict import residuals as predictor_residuals
from edge_agent.wire.rangecoder import rc_encode
from edge_agent.wire.varint import put_uvarint, zigzag, zigzags


def times_section(times_ms: Sequence[int], t0_ms: int, period: int) -> tuple[bool, bool, bytes]:
    """A channel's times as slots of the schedule: (regular, has exceptions, the bytes
    after the shape). Regular: consecutive slots from the first, written as that slot;
    else the gaps between slots (zigzag, Simple-8b). Then the offsets of the times that
    are not on their slot, if any."""
    ks, exceptions = [], []
    for i, t in enumerate(times_ms):
        k = (t - t0_ms + period // 2) // period
        off = t - t0_ms - k * period
        if off:
            exceptions.append((i, off))
        ks.append(k)
    regular = bool(ks) and ks[0] >= 0 and all(b - a == 1 for a, b in pairwise(ks))
    out = bytearray()
    if regular:
        put_uvarint(out, ks[0])
    else:
        block = pack_simple8b([zigzag(b - a - 1) for a, b in zip([-1, *ks], ks)])
        put_uvarint(out, len(block))
        out += block
    if exceptions:
        put_uvarint(out, len(exceptions))
        prev_i = -1
        for i, off in exceptions:
            put_uvarint(out, i - prev_i - 1)
            put_uvarint(out, zigzag(off))
            prev_i = i
    return regular, bool(exceptions), bytes(out)


def coded_block(residuals: list[int], kind: int, season: int) -> bytes:
    """The coded form's block: predictor, season, range-coded residuals, padded with zero
    bytes (which the decoder reads past the end anyway) to a byte per MAX_PER_BYTE values,
    so the decoder's bound on the sample count holds for every form."""
    head = bytearray()
    put_uvarint(head, kind)
    if kind == PREDICTOR_SEASONAL:
        put_uvarint(head, season)
    return bytes(head) + rc_encode(residuals).ljust(-(-len(residuals) // MAX_PER_BYTE), b"\0")


def value_block(
    qs: Sequence[int], width: int, kinds: list[int], season: int, coded: bool
) -> tuple[bytes, int, int]:
    """Every predictor of ``kinds`` in each of its forms, the smallest block kept (the
    earlier on a tie): (block, predictor, shape bits of the predictor and form). Version
    2's forms come first for predictors 0-3, so a tie keeps the payload readable by older
    decoders; ``coded`` adds the range-coded form (version 3)."""
    best, too_wide = None, 0
    for kind in kinds:
        residuals = predictor_residuals(qs, kind, width, season)[0]
        widest = max(max(residuals), -min(residuals)) if residuals else 0
        if widest >= 1 << 59:  # beyond Simple-8b's zigzag values: another predictor may do
            too_wide = widest
            continue
        forms = []
        if kind < PREDICTOR_ZERO:
            block, form = pack_residuals(zigzags(residuals))
            forms.append((block, kind << 3 | form))
        if coded:
            forms.append((coded_block(residuals, kind, season), SHAPE_CODED))
        for block, shape in forms:
            if best is None or len(block) < len(best[0]):
                best = (block, kind, shape)
    if best is None and too_wide:
        raise ValueError(
            f"a residual of about 2**{too_wide.bit_length() - 1} steps: values too far apart to encode"
        )
    if best is None:
        raise ValueError("value_block needs at least one predictor")
    return best
