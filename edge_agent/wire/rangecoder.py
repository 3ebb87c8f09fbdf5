"""Adaptive binary range coding of integer residuals: wire form "coded" (docs/wire-format.md).

Each residual r is sent as three parts, every binary decision coded with an adaptive
probability (the range coder of LZMA: 32-bit range, 11-bit probabilities, carries
propagated through a cache byte):

* n, the bit length of |r| (0 for r = 0), as a 6-bit tree, most significant bit first;
  the tree's first three levels start out expecting a short residual (below 2**7);
* the bits of |r| below its leading one, most significant first: the first six through a
  tree per bit length (so the coder learns which values occur, e.g. the steps of a value
  converted from Fahrenheit), the rest at probability 1/2;
* the sign, its probability chosen by the sign of the previous non-zero residual.

A probability moves towards each decision it codes by 1/4 of the way for its first two
decisions, 1/8 for the next two, 1/16 for the next four and 1/32 from then on (a batch of
ten values must learn fast, a day of values must settle), and stays within [32, 2016] /
2048, so a surprise costs at most 6 bits. Conditioning the bit length on the one before
(as lossless audio coders do) was measured and left out: on the real series of
bench/bench_bits.py it cost more, in whole series and in 10- and 60-value batches, than
the context it added.

The model starts afresh in every block, so each batch decodes on its own. The coded
bytes drop the range coder's leading zero byte and end as early as the decoder (which
reads zero bytes past the end) can tell the last decision: a block costs about one byte
more than the information it carries.

This module is the pure-Python twin; the compiled core (edge_agent._core) has the same
functions, ``rc_encode`` and ``rc_decode``, and edge_agent.wire.kernels binds the one in use.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge_agent.errors import WireFormatError

PROB_BITS = 11
P_MIN, P_MAX = 32, (1 << PROB_BITS) - 32
# A state is p << 4 | count: p the probability (of 2048) that the next decision is 0,
# count how many decisions it has coded (up to 8), which sets how fast p moves.
_SHIFT = (2, 2, 3, 3, 4, 4, 4, 4, 5)
_HALF = (1 << (PROB_BITS - 1)) << 4
TOP = 1 << 24
LEN_BITS = 6  # bit lengths 0..63 (residuals are below 2**60)
_LEN_PRIOR = (2000, 1950, 1700)  # p(0) of the length tree's first levels: n < 32, n < 16, n < 8
MANT_BITS = 6  # adaptive mantissa bits below the leading one
MAX_BITS = 60


class _Encoder:
    __slots__ = ("cache", "low", "out", "pending", "range")

    def __init__(self) -> None:
        self.low = 0
        self.range = 0xFFFFFFFF
        self.cache = 0
        self.pending = 1
        self.out = bytearray()

    def _shift(self) -> None:
        low = self.low
        if low < 0xFF000000 or low >= 1 << 32:
            carry = low >> 32
            b = self.cache
            while True:
                self.out.append((b + carry) & 0xFF)
                b = 0xFF
                self.pending -= 1
                if not self.pending:
                    break
            self.cache = (low >> 24) & 0xFF
        self.pending += 1
        self.low = (low & 0x00FFFFFF) << 8

    def bit(self, probs: list[int], i: int, bit: int) -> None:
        state = probs[i]
        p, count = state >> 4, state & 15
        shift = _SHIFT[count]
        bound = (self.range >> PROB_BITS) * p
        if bit:
            self.low += bound
            self.range -= bound
            p -= p >> shift
            if p < P_MIN:
                p = P_MIN
        else:
            self.range = bound
            p += (2048 - p) >> shift
            if p > P_MAX:
                p = P_MAX
        probs[i] = p << 4 | (count + 1 if count < 8 else 8)
        while self.range < TOP:
            self.range <<= 8
            self._shift()

    def direct(self, value: int, nbits: int) -> None:
        for k in range(nbits - 1, -1, -1):
            self.range >>= 1
            if (value >> k) & 1:
                self.low += self.range
            while self.range < TOP:
                self.range <<= 8
                self._shift()

    def finish(self) -> bytes:
        # Any number in [low, low + range) decodes the same: take the one with the most
        # trailing zero bytes, write it, and leave out the zeros (the decoder reads them).
        for nbytes in range(1, 5):
            mask = (1 << (32 - 8 * nbytes)) - 1
            v = (self.low + mask) & ~mask
            if v < self.low + self.range:
                self.low = v
                break
        for _ in range(5):
            self._shift()
        return bytes(self.out[1:]).rstrip(b"\0")  # the first byte is always 0


class _Decoder:
    __slots__ = ("code", "data", "pos", "range")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 4
        self.range = 0xFFFFFFFF
        self.code = int.from_bytes(data[:4].ljust(4, b"\0"), "big")

    def _next(self) -> int:
        pos = self.pos
        self.pos = pos + 1
        return self.data[pos] if pos < len(self.data) else 0

    def bit(self, probs: list[int], i: int) -> int:
        state = probs[i]
        p, count = state >> 4, state & 15
        shift = _SHIFT[count]
        bound = (self.range >> PROB_BITS) * p
        if self.code < bound:
            self.range = bound
            b = 0
            p += (2048 - p) >> shift
            if p > P_MAX:
                p = P_MAX
        else:
            self.code -= bound
            self.range -= bound
            b = 1
            p -= p >> shift
            if p < P_MIN:
                p = P_MIN
        probs[i] = p << 4 | (count + 1 if count < 8 else 8)
        while self.range < TOP:
            self.range <<= 8
            self.code = ((self.code << 8) | self._next()) & 0xFFFFFFFF
        return b

    def direct(self, nbits: int) -> int:
        v = 0
        for _ in range(nbits):
            self.range >>= 1
            b = 0
            if self.code >= self.range:
                self.code -= self.range
                b = 1
            v = (v << 1) | b
            while self.range < TOP:
                self.range <<= 8
                self.code = ((self.code << 8) | self._next()) & 0xFFFFFFFF
        return v


def _models() -> tuple[list[int], list[int], list[int]]:
    lens = [_HALF] * (1 << LEN_BITS)
    for node in range(1, 1 << LEN_BITS):
        depth = node.bit_length() - 1
        if depth < len(_LEN_PRIOR):
            lens[node] = _LEN_PRIOR[depth] << 4
    return lens, [_HALF] * ((MAX_BITS + 1) << MANT_BITS), [_HALF] * 3


def rc_encode(residuals: Sequence[int]) -> bytes:
    """The coded block of signed integer residuals (each |r| < 2**60)."""
    enc = _Encoder()
    lens, mant, signs = _models()
    sctx = 0
    for r in residuals:
        m = -r if r < 0 else r
        n = m.bit_length()
        if n > MAX_BITS:
            raise ValueError(f"value {r} does not fit the range coder (|r| < 2**60)")
        node = 1
        for k in range(LEN_BITS - 1, -1, -1):
            b = (n >> k) & 1
            enc.bit(lens, node, b)
            node = (node << 1) | b
        if n > 1:
            nb = n - 1
            adaptive = nb if nb < MANT_BITS else MANT_BITS
            base = n << MANT_BITS
            node = 1
            for k in range(nb - 1, nb - 1 - adaptive, -1):
                b = (m >> k) & 1
                enc.bit(mant, base + node, b)
                node = (node << 1) | b
            if nb > adaptive:
                enc.direct(m, nb - adaptive)
        if n:
            neg = 1 if r < 0 else 0
            enc.bit(signs, sctx, neg)
            sctx = 1 + neg
    return enc.finish()


def rc_decode(block: bytes, n: int, what: str = "block") -> list[int]:
    """The ``n`` residuals of a coded block."""
    dec = _Decoder(bytes(block))
    lens, mant, signs = _models()
    out: list[int] = []
    sctx = 0
    for _ in range(n):
        node = 1
        for _k in range(LEN_BITS):
            node = (node << 1) | dec.bit(lens, node)
        bits = node - (1 << LEN_BITS)
        if bits > MAX_BITS:
            raise WireFormatError(f"{what}: a coded residual of more than {MAX_BITS} bits")
        m = 1 if bits else 0
        if bits > 1:
            nb = bits - 1
            adaptive = nb if nb < MANT_BITS else MANT_BITS
            base = bits << MANT_BITS
            node = 1
            for _k in range(adaptive):
                node = (node << 1) | dec.bit(mant, base + node)
            m = node
            if nb > adaptive:
                m = (m << (nb - adaptive)) | dec.direct(nb - adaptive)
        if bits:
            neg = dec.bit(signs, sctx)
            sctx = 1 + neg
            out.append(-m if neg else m)
        else:
            out.append(0)
    return out
