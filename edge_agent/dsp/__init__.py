"""The signal core: a chain of streaming stages per channel.

``Chain`` is the compiled core's (``edge_agent._core``) or its pure-Python twin
(``edge_agent.dsp.chain``), as ``edge_agent.implementation`` decided; the stages' kinds,
limits and ``check_spec`` are in ``edge_agent.dsp.stages``, shared by both;
``IMPLEMENTATION`` tells which one runs (``"cython"`` or ``"python"``).

A chain takes samples as (time in seconds, value) and gives points (time, value).
Its stages, in the order a configuration would usually put them:

* ``("calibrate", c0, c1, ...)``: ``y = c0 + c1*x + c2*x^2 + ...`` (up to 8 coefficients).
* ``("range", low, high, mode)``: outside [low, high] a sample is dropped (mode 0) or
  clamped to the limit (mode 1): the physical range check.
* ``("hampel", window, k)``: if the newest sample is more than ``k * 1.4826 * MAD``
  from the median of the last ``window`` (odd) samples, it is replaced by that median.
* ``("median", window)``, ``("mean", window)``: moving median / mean over the last
  ``window`` (1..255) samples; before the window has filled, over what came so far.
* ``("ema", alpha)``: ``y = (1 - alpha) * y + alpha * x``, started at the first sample
  (in this order of operations: the recurrence's path is one multiply and one add).
* ``("kalman", q, r)``: 1-D random-walk Kalman filter, process noise variance q,
  measurement noise variance r.
* ``("throttle", interval)``: passes a sample at most every ``interval`` seconds.

Lossy stages (at most one, and last):

* ``("deadband", width, relative, max_interval)``: passes a value only when it differs
  from the last one passed by more than ``width`` (``width * |last|`` when relative is
  1), or when ``max_interval`` seconds (heartbeat, 0 = none) have gone by. Bound:
  holding each kept value until the next kept point reconstructs every sample within
  ``width``.
* ``("swing", eps, max_interval)``: swinging door. Bound: linear interpolation between
  the kept points reconstructs every sample within ``eps``. Kept points lie on the door's
  feasible line, so they may differ from their sample by up to ``eps``; a segment also
  closes after ``max_interval`` seconds (0 = none). Samples must come in strictly
  increasing time.

``flush()`` closes the lossy stage's open segment at a seal (the swinging door gives its
end point) and makes the next batch start with its own first sample, so every batch
decodes on its own. A value that is not finite (NaN, an infinity) is dropped at the
chain's entry, and one that a stage makes so (a calibration overflowing) is kept out of a
median's or Hampel's window, so those hold finite values only (and take -0.0 as 0.0).
``get_state()`` and ``set_state()`` save and restore the filter state as plain numbers,
the same for both implementations, so a restart need not reset a long window.
"""

from __future__ import annotations

from edge_agent.dsp import chain as _twin
from edge_agent.dsp.stages import ARITY, LOSSY, MAX_POLY, MAX_WINDOW, check_spec
from edge_agent.implementation import IMPLEMENTATION, compiled

Chain = compiled.Chain if compiled is not None else _twin.Chain

STAGE_KINDS = tuple(ARITY)

__all__ = ["IMPLEMENTATION", "LOSSY", "MAX_POLY", "MAX_WINDOW", "STAGE_KINDS", "Chain", "check_spec"]
