"""The wire package's one binding of the compiled core's kernels, or their pure-Python twins.

edge_agent.implementation decides (``compiled`` is edge_agent._core, or None under
``EDGE_AGENT_PUREPYTHON=1`` or when it is not built); this module binds each kernel once,
and nothing else in the package touches the compiled core. Every name here has a twin of
the same name and signature in the module that holds its concern:

=================  ==============================  ===================================
kernel             twin                            what
=================  ==============================  ===================================
crc32c             edge_agent.wire.crc32c          the payload's checksum
rc_encode/decode   edge_agent.wire.rangecoder      the coded form's range coder
pack_simple8b      edge_agent.wire.packing         Simple-8b words
pack_rice          edge_agent.wire.packing         Rice codes
zigzags            edge_agent.wire.varint          zigzag of a list
residuals          edge_agent.wire.predict         a predictor's residuals
values_from        edge_agent.wire.predict         the values rebuilt from them
times_section      edge_agent.wire.sections        a channel's time slots
value_block        edge_agent.wire.sections        the smallest value block
=================  ==============================  ===================================

The compiled predictors and sections compute in int64: beyond it they raise OverflowError
and the twin, whose integers have no bound, gives the answer (the same bytes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from edge_agent.implementation import compiled
from edge_agent.wire import crc32c as _crc32c
from edge_agent.wire import packing as _packing
from edge_agent.wire import predict as _predict
from edge_agent.wire import rangecoder as _rangecoder
from edge_agent.wire import sections as _sections
from edge_agent.wire import varint as _varint

__all__ = [
    "crc32c",
    "pack_rice",
    "pack_simple8b",
    "rc_decode",
    "rc_encode",
    "residuals",
    "times_section",
    "value_block",
    "values_from",
    "zigzags",
]

crc32c: Callable[..., int] = compiled.crc32c if compiled else _crc32c.crc32c
rc_encode: Callable[..., bytes] = compiled.rc_encode if compiled else _rangecoder.rc_encode
rc_decode: Callable[..., list[int]] = compiled.rc_decode if compiled else _rangecoder.rc_decode
pack_simple8b: Callable[[list[int]], bytes] = compiled.pack_simple8b if compiled else _packing.pack_simple8b
pack_rice: Callable[[list[int]], bytes] = compiled.pack_rice if compiled else _packing.pack_rice
zigzags: Callable[[list[int]], list[int]] = compiled.zigzags if compiled else _varint.zigzags

_compiled_residuals = compiled.residuals if compiled else None
_compiled_times_section = compiled.times_section if compiled else None
_compiled_value_block = compiled.value_block if compiled else None
_compiled_values_from = compiled.values_from if compiled else None


def _compiled_or_twin(kernel: Callable[..., Any] | None, twin: Callable[..., Any], *args: Any) -> Any:
    """kernel(*args) when the compiled core is in use and the numbers fit its int64 (it
    raises OverflowError beyond), else the twin's answer."""
    if kernel is not None:
        try:
            return kernel(*args)
        except OverflowError:
            pass
    return twin(*args)


def residuals(qs: Sequence[int], kind: int, width: int = 1, season: int = 0) -> tuple[list[int], list[int]]:
    """(signed residuals, rebuilt values) of predictor ``kind``: see predict.residuals."""
    return _compiled_or_twin(_compiled_residuals, _predict.residuals, qs, kind, width, season)


def values_from(
    residuals: Sequence[int], kind: int, width: int = 1, season: int = 0, zigzag: bool = False
) -> list[int]:
    """The values rebuilt from predictor ``kind``'s residuals: see predict.values_from."""
    return _compiled_or_twin(
        _compiled_values_from, _predict.values_from, residuals, kind, width, season, zigzag
    )


def times_section(times_ms: Sequence[int], t0_ms: int, period: int) -> tuple[bool, bool, bytes]:
    """(regular, has exceptions, bytes) of a channel's times: see sections.times_section."""
    return _compiled_or_twin(_compiled_times_section, _sections.times_section, times_ms, t0_ms, period)


def value_block(
    qs: Sequence[int], width: int, kinds: list[int], season: int, coded: bool
) -> tuple[bytes, int, int]:
    """(block, predictor, shape bits), the smallest of ``kinds``: see sections.value_block."""
    return _compiled_or_twin(_compiled_value_block, _sections.value_block, qs, width, kinds, season, coded)
