# cython: language_level=3
"""Compiled signal core: streaming stages over (time, value) samples, chained per channel.

The pure-Python twin in ``edge_agent/_dsp_py.py`` has the same API and gives the
same results bit for bit (same IEEE operations in the same order); it is the
oracle in the tests. A chain lives in one C array of stage states, so a whole
chain runs in compiled code with no return to Python between stages, and the
batch call releases the GIL. Stages and their bounds: see ``edge_agent/dsp.py``.
"""

cimport cython
from libc.math cimport INFINITY, fabs, isfinite, isnan, log2
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memmove, memset

from edge_agent.dsp.stages import LOSSY, MAD_SCALE, MAX_POLY, MAX_WINDOW, check_spec
from edge_agent.errors import WireFormatError

include "windows.pxi"     # sorted windows, median and MAD      twin: edge_agent/dsp/chain.py (_Window)
include "stages.pxi"      # kinds, one stage's state, step, block  twin: edge_agent/dsp/chain.py (_Stage)
include "chain.pxi"       # the filter chain                     twin: edge_agent/dsp/chain.py (Chain)
include "crc32c.pxi"      # CRC-32C, slicing-by-8                twin: edge_agent/wire/crc32c.py
include "packing.pxi"     # Simple-8b, Rice, zigzags             twin: edge_agent/wire/packing.py
include "rangecoder.pxi"  # adaptive binary range coder          twin: edge_agent/wire/rangecoder.py
include "predict.pxi"     # the predictors' residuals            twin: edge_agent/wire/predict.py
include "sections.pxi"    # a channel's value block and times    twin: edge_agent/wire/sections.py
