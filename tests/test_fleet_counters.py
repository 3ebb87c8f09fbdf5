"""edge_agent/fleet/counters.py: a counter only goes up, across restarts and crashes at every step
of its write; persist-then-act makes every signed object acted on at most once."""

from __future__ import annotations

import os
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.fleet.counters import CounterStore
from edge_agent.fleet.keys import OperatorKey, TrustStore
from edge_agent.fleet.refusal import Refused
from edge_agent.fleet.signed import Audience, accept, sign

NOW = 1_800_000_000
KEY = OperatorKey(bytes(32))
TRUST = TrustStore([KEY.public])
LAMP = Audience("lamp-0042")
DIGEST = "ab" * 32


class Crash(BaseException):
    """The process dies here: nothing after it runs, no handler sees it."""


# Each step of record() at which a power cut or a kill can land, as the call that does not return.
CRASH_POINTS = {
    "open_tmp": ("open", 0),  # os.open of the temporary file (the lock file is opened before)
    "write": ("write", 0),
    "fsync_file": ("fsync", 0),
    "rename": ("replace", 0),
    "fsync_dir": ("fsync", 1),
}


def crashing_at(point: str):
    """A patch of ``os`` that crashes at the n-th call of one function inside record()."""
    name, nth = CRASH_POINTS[point]
    real = getattr(os, name)
    calls = {"n": 0}
    skip_first_open = name == "open"  # the lock file

    def fake(*args, **kwargs):
        if skip_first_open and calls.get("lock") is None:
            calls["lock"] = True
            return real(*args, **kwargs)
        if calls["n"] == nth:
            calls["n"] += 1
            if name == "write":  # a torn write: half of it lands
                real(args[0], args[1][: len(args[1]) // 2])
            raise Crash(point)
        calls["n"] += 1
        return real(*args, **kwargs)

    return mock.patch.object(os, name, fake)


def test_a_fresh_node_has_no_counters_and_the_file_is_private(tmp_path):
    store = CounterStore(tmp_path / "state" / "fleet" / "counters.json")
    assert store.last("update") == (0, "")
    store.record("update", 3, DIGEST)
    assert store.last("update") == (3, DIGEST) and store.last("config") == (0, "")
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert store.path.parent.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["counters.json", "counters.json.lock"]


def test_record_never_lowers_a_counter(tmp_path):
    store = CounterStore(tmp_path / "counters.json")
    store.record("command", 10, DIGEST)
    for lower in (10, 9, 1):
        with pytest.raises(Refused):
            store.record("command", lower, "cd" * 32)
    assert CounterStore(store.path).last("command") == (10, DIGEST)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b'{"update":{"counter":-1,"sha256":"' + b"a" * 64 + b'"}}',
        b'{"shell":{}}',
        b"x" * 5000,
    ],
)
def test_a_damaged_record_refuses_everything(tmp_path, content):
    path = tmp_path / "counters.json"
    path.write_bytes(content)
    with pytest.raises(Refused) as exc:
        CounterStore(path).last("update")
    assert exc.value.reason == "counter_state"
    with pytest.raises(Refused, match="counter_state"):
        CounterStore(path).record("update", 1, DIGEST)
    assert path.read_bytes() == content  # left for a person to look at


@pytest.mark.parametrize("point", sorted(CRASH_POINTS))
def test_a_crash_at_any_step_leaves_the_old_counter_or_the_new_one(tmp_path, point):
    store = CounterStore(tmp_path / "counters.json")
    store.record("update", 4, DIGEST)
    with crashing_at(point), pytest.raises(Crash):
        store.record("update", 9, "cd" * 32)
    left = tmp_path / ".counters.json.tmp"
    assert left.exists() == (point in ("write", "fsync_file", "rename"))  # the crash landed where named
    after = CounterStore(store.path).last("update")  # the restart
    assert after == ((9, "cd" * 32) if point == "fsync_dir" else (4, DIGEST))
    store.record("update", 10, DIGEST)  # and the next write is not hindered by what was left
    assert CounterStore(store.path).last("update") == (10, DIGEST)


@given(st.lists(st.tuples(st.integers(1, 3), st.sampled_from([None, *sorted(CRASH_POINTS)])), max_size=12))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_counter_never_goes_down_across_crashes_and_restarts(tmp_path_factory, steps):
    path = tmp_path_factory.mktemp("c") / "counters.json"
    durable = 0  # what a restart must find at least
    offered = 0
    for step, crash in steps:
        offered += step
        store = CounterStore(path)  # every step is a new process
        if crash is None:
            store.record("config", offered, DIGEST)
            durable = offered
        else:
            with crashing_at(crash), pytest.raises(Crash):
                store.record("config", offered, DIGEST)
            if crash == "fsync_dir":  # renamed: it is the record, even if the directory's fsync was lost
                durable = offered
        found = CounterStore(path).last("config")[0]
        assert found == durable
        assert found <= offered


def _command(counter: int) -> bytes:
    return sign(
        "command",
        {"do": "restart"},
        key=KEY,
        target="node:lamp-0042",
        counter=counter,
        expires=NOW + 60,
        issued=NOW,
    )


@given(st.lists(st.sampled_from([None, "before_act", *sorted(CRASH_POINTS)]), min_size=1, max_size=6))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_persist_then_act_acts_on_an_object_at_most_once(tmp_path_factory, crashes):
    """The same command delivered again after each crash (a broker redelivers, the operator
    retries): it is acted on at most once, and exactly once unless a crash fell between its
    record and its act."""
    path = tmp_path_factory.mktemp("c") / "counters.json"
    data = _command(7)
    acted = 0
    lost = False
    for crash in crashes:
        store = CounterStore(path)
        try:
            if crash in CRASH_POINTS:
                with crashing_at(crash):
                    accept(data, kind="command", trust=TRUST, audience=LAMP, counters=store, now=NOW)
            else:
                accept(data, kind="command", trust=TRUST, audience=LAMP, counters=store, now=NOW)
            if crash == "before_act":
                raise Crash("before_act")
            acted += 1
        except Crash as c:
            lost = lost or str(c) in ("before_act", "fsync_dir")
        except Refused as exc:
            assert exc.reason == "replayed"
    assert acted <= 1
    if not lost and None in crashes:
        assert acted == 1
