"""A process accepting signed objects, killed with SIGKILL at arbitrary moments (most land inside
the counter's write, which is where its time goes): after every kill the record reads, holds at
least every counter the process had reported accepted and at most the one in flight, and the
next process goes on from it. And the agent's own start does not load PyNaCl."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap

from helpers import REPO

from edge_agent.fleet.counters import CounterStore
from edge_agent.fleet.keys import OperatorKey, TrustStore
from edge_agent.fleet.refusal import Refused
from edge_agent.fleet.signed import Audience, accept, sign

SEED = bytes(range(32))
NOW = 1_800_000_000

CHILD = textwrap.dedent("""\
    import sys
    from edge_agent.fleet.counters import CounterStore
    from edge_agent.fleet.keys import OperatorKey, TrustStore
    from edge_agent.fleet.signed import Audience, accept, sign

    key = OperatorKey(bytes(range(32)))
    trust, lamp = TrustStore([key.public]), Audience("lamp-0042")
    store = CounterStore(sys.argv[1])
    n = store.last("command")[0]
    while True:
        n += 1
        data = sign("command", {"do": "health"}, key=key, target="node:lamp-0042",
                    counter=n, expires=%d, issued=%d)
        accept(data, kind="command", trust=trust, audience=lamp, counters=store, now=%d)
        print(n, flush=True)  # only once accept() has returned: the counter is durable
""") % (NOW + 3600, NOW, NOW)


def _command(counter: int) -> bytes:
    return sign(
        "command",
        {"do": "health"},
        key=OperatorKey(SEED),
        target="node:lamp-0042",
        counter=counter,
        expires=NOW + 3600,
        issued=NOW,
    )


def test_sigkill_at_any_moment_never_lowers_the_counter(tmp_path):
    path = tmp_path / "state" / "fleet" / "counters.json"
    rng = random.Random(16)
    reported = 0
    for _ in range(12):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
        try:
            assert proc.stdout is not None
            for _ in range(rng.randint(3, 60)):
                line = proc.stdout.readline()
                assert line, "the child stopped by itself"
                reported = int(line)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            proc.stdout.close()  # type: ignore[union-attr]
        found = CounterStore(path).last("command")[0]  # reads: never torn
        assert reported <= found
        # it may have gone on after the last line we read: what is on disk is what it accepted
    store = CounterStore(path)
    last = store.last("command")[0]
    trust, lamp = TrustStore([OperatorKey(SEED).public]), Audience("lamp-0042")
    try:
        accept(_command(reported), kind="command", trust=trust, audience=lamp, counters=store, now=NOW)
        raise AssertionError("an object reported accepted was accepted again")
    except Refused as exc:
        assert exc.reason in ("replayed", "older")
    assert accept(_command(last + 1), kind="command", trust=trust, audience=lamp, counters=store, now=NOW)
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.startswith(".")) == [
        "counters.json",
        "counters.json.lock",
    ]


def test_the_agent_s_commands_load_no_cryptography_until_one_needs_it():
    code = (
        "import sys, edge_agent.cli as c; c.build_parser(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('nacl', 'edge_agent') and "
        "(m.startswith('nacl') or m.startswith('edge_agent.fleet'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stdout
