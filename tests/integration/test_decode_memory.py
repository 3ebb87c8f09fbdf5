"""Decoding under a memory limit, as a backbone worker would run it: the payloads that
claim the most samples for their bytes (runs of zeros in every form, many channels, every
version), and mutations of them with their checksum made right, decoded in a process whose
address space is capped at 1 GiB. Each decodes within the limits or is refused with a
WireFormatError; none raises MemoryError (a 48-byte payload once claimed 2^31 samples)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from helpers import REPO

SCRIPT = textwrap.dedent(
    """
    import random, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    from edge_agent import wire
    from edge_agent.errors import WireFormatError
    from edge_agent.wire.crc32c import crc32c

    def batch(nch, n, version):
        chs = tuple(
            wire.ChannelData(f"c{i}", "u", 1.0, tuple(range(n)), (0,) * n) for i in range(nch)
        )
        return wire.encode(wire.Batch("n", "s", 0, 0, chs, period_ms=1, epoch=7), version=version)

    seeds = []
    for version in (2, 3, 4):
        seeds.append(batch(1, wire.MAX_CHANNEL_SAMPLES, version))  # the most one channel may claim
        seeds.append(batch(16, wire.MAX_BATCH_SAMPLES // 16, version))
    rnd = random.Random(14)
    decoded = refused = 0
    for i in range(300):
        p = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 4)):  # counts, lengths, selectors: wherever the bytes fall
            p[rnd.randrange(4, len(p) - 4)] = rnd.choice((0x00, 0xFF, 0x7F, 0x80, rnd.randrange(256)))
        body = bytes(p[:-4])
        p = body + crc32c(body).to_bytes(4, "little")
        try:
            b = wire.decode(p)
            assert sum(len(c.values_q) for c in b.channels) <= wire.MAX_BATCH_SAMPLES
            decoded += 1
        except WireFormatError:
            refused += 1
    print("ok", decoded, refused)
    """
)


def test_the_widest_payloads_and_their_mutations_decode_within_a_gibibyte():
    # The core in use either way (building the seeds with the pure-Python encoder alone
    # takes minutes; the decoder's allocations are the same in both)
    env = {k: v for k, v in os.environ.items() if k != "EDGE_AGENT_PUREPYTHON"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=900, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ok, decoded, refused = proc.stdout.split()
    assert ok == "ok" and int(decoded) + int(refused) == 300 and int(refused) > 0, proc.stdout
