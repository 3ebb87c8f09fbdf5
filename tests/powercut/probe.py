"""``python -m powercut.probe SAMPLES_FILE ARGS...`` runs ``edge-agent ARGS...`` (the same
``edge_agent.cli.main``) and appends one line to SAMPLES_FILE for every sample a driver
gave that put a point in its stream's open batch: ``STREAM MONO_MS``, the monotonic time
(ms) of that point, which the batch carries as ``MONO_MS + wall_offset_ms`` once sealed.

The line is written (a write(2) on a file opened O_APPEND, outside the filesystem under
test) as soon as the sample is in the open batch and before the sampler goes on, so a
SIGKILL at any moment leaves in the file every sample the agent could have sealed: what a
cut lost is counted against it. Nothing else of the agent is changed, but with
``--unsafe-commits`` (first): then the queue commits with synchronous=NORMAL, without an
fsync per commit, the mistake the power-cut test must catch (its negative control)."""

from __future__ import annotations

import os
import sys


def main() -> int:
    args = sys.argv[1:]
    if args[0] == "--unsafe-commits":
        args = args[1:]
        from edge_agent.node import store_file

        connect = store_file.connect

        def unsafe(path: str):
            db = connect(path)
            db.execute("PRAGMA synchronous=NORMAL")
            return db

        store_file.connect = unsafe  # type: ignore[assignment]
    out = os.open(args[0], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    from edge_agent.node import sampler

    sample = sampler.Sampler.sample

    def counted(self: sampler.Sampler, slot: sampler.SensorSlot) -> None:
        before = {name: len(pipe.mono_ms) for name, pipe in slot.channels.items()}
        sample(self, slot)
        times = {t for name, pipe in slot.channels.items() for t in pipe.mono_ms[before[name] :]}
        if times:
            os.write(out, "".join(f"{slot.cfg.name} {t}\n" for t in sorted(times)).encode())

    sampler.Sampler.sample = counted  # type: ignore[method-assign]
    from edge_agent.cli import main as cli

    return cli(args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
