# cython: language_level=3
"""edge-agent's compiled core, built as ``edge_agent._core``: the signal chain and the wire
codec's kernels. Every part has a pure-Python twin with the same names that gives the same
results bit for bit (the same IEEE operations in the same order; the same bytes); the twins
are the oracle in the tests and the fallback where no compiler was available, and
``edge_agent.implementation`` decides which runs. Nothing but that decision and the
packages' bindings (``edge_agent.dsp``, ``edge_agent.wire``) imports this module; its API is
typed in ``edge_agent/_core.pyi``.

The signal chain (twin: ``edge_agent.dsp.chain``; the stages are in ``edge_agent.dsp``):

* ``Chain(spec)``: streaming stages over (time, value) samples in one C array of stage
  states, so a whole chain runs in compiled code with no return to Python between stages;
  ``push``, ``flush``, ``run`` (a batch, without the GIL), ``get_state``, ``set_state``,
  ``reset``; ``spec``, ``error_bound``, ``relative_bound``.

The wire codec's kernels (twins in ``edge_agent.wire``):

* ``crc32c(data, crc=0)``: CRC-32C of a bytes-like object.
* ``rc_encode(residuals)``, ``rc_decode(block, n, what="block")``: adaptive binary range
  coding of signed residuals.
* ``residuals(qs, kind, width=1, season=0)``: a predictor's residuals and the values the
  decoder rebuilds; ``values_from(residuals, kind, width=1, season=0, zigzag=False)``: the
  values rebuilt from them.
* ``pack_simple8b(values)``, ``pack_rice(values, part_size=64)``, ``zigzags(values)``.
* ``value_block(qs, width, kinds, season, coded)``: a channel's smallest value block.
* ``times_section(times, t0, period)``: a channel's times as slots of the schedule.

The kernels raise OverflowError for integers beyond their C range; the callers then use
the twin, whose integers have no bound.
"""

cimport cython
from libc.math cimport INFINITY, fabs, isfinite, isnan, log2
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memmove, memset

# A private name: the module's namespace is its API (edge_agent/_core.pyi). The stages'
# definitions come from edge_agent.dsp.stages at the first Chain (see _stage_rules).
from edge_agent.errors import WireFormatError as _WireFormatError

# Each part holds one concern and names its pure-Python twin in its first lines. Order:
# a part may use what an earlier one defines (Cython also resolves later C names).
include "windows.pxi"     # sorted windows, median and MAD      twin: edge_agent/dsp/chain.py (_Window)
include "stages.pxi"      # kinds, one stage's state, step, block  twin: edge_agent/dsp/chain.py (_Stage)
include "chain.pxi"       # the filter chain                     twin: edge_agent/dsp/chain.py (Chain)
include "crc32c.pxi"      # CRC-32C, slicing-by-8                twin: edge_agent/wire/crc32c.py
include "packing.pxi"     # Simple-8b, Rice, zigzags             twins: edge_agent/wire/packing.py, varint.py
include "rangecoder.pxi"  # adaptive binary range coder          twin: edge_agent/wire/rangecoder.py
include "predict.pxi"     # the predictors' residuals            twin: edge_agent/wire/predict.py
include "sections.pxi"    # value block and times section        twin: edge_agent/wire/sections.py
