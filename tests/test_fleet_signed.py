"""edge_agent/fleet/signed.py: the envelope of every signed object; each refusal by its reason,
logged; any change of any byte refused."""

from __future__ import annotations

import base64
import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.fleet import canonical
from edge_agent.fleet.counters import CounterStore
from edge_agent.fleet.keys import OperatorKey, TrustStore
from edge_agent.fleet.refusal import Refused
from edge_agent.fleet.signed import Audience, accept, pae, sign, verify

NOW = 1_800_000_000
OPERATOR = OperatorKey(bytes(range(32)))
STRANGER = OperatorKey(bytes(range(1, 33)))
TRUST = TrustStore([OPERATOR.public])
LAMP = Audience("lamp-0042", frozenset({"district-7"}))


def signed(kind="command", body=None, *, key=OPERATOR, target="node:lamp-0042", counter=5, expires=NOW + 60):
    return sign(
        kind,
        {"do": "flush"} if body is None else body,
        key=key,
        target=target,
        counter=counter,
        expires=expires,
        issued=NOW - 60,
    )


@pytest.fixture
def counters(tmp_path):
    return CounterStore(tmp_path / "fleet" / "counters.json")


def check(data, counters, kind="command", audience=LAMP, now=NOW):
    return verify(data, kind=kind, trust=TRUST, audience=audience, counters=counters, now=now)


def test_pae_is_dsse_s_own_vector():
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_a_signed_object_verifies_and_says_what_it_is(counters):
    v = check(signed(body={"do": "flush", "streams": ["air"]}), counters)
    assert (v.kind, v.target, v.counter, v.body, v.key_id) == (
        "command",
        "node:lamp-0042",
        5,
        {"do": "flush", "streams": ["air"]},
        OPERATOR.public.id,
    )
    assert check(signed(target="group:district-7"), counters).target == "group:district-7"


def test_the_envelope_is_dsse_in_canonical_json():
    data = signed()
    env = json.loads(data)
    assert canonical.dumps(env) == data
    assert env["payloadType"] == "application/vnd.edge-agent.command+json"
    assert env["signatures"][0]["keyid"] == OPERATOR.public.id
    payload = base64.b64decode(env["payload"])
    assert json.loads(payload)["target"] == "node:lamp-0042"
    assert TRUST.verifies(
        OPERATOR.public.id, pae(env["payloadType"], payload), base64.b64decode(env["signatures"][0]["sig"])
    )


def _resigned_payload(data: bytes, change) -> bytes:
    """The same object with its payload changed and the signature left as it was."""
    env = json.loads(data)
    payload = json.loads(base64.b64decode(env["payload"]))
    change(payload)
    env["payload"] = base64.b64encode(canonical.dumps(payload)).decode()
    return canonical.dumps(env)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: signed(key=STRANGER), "unknown_key"),
        (lambda: _resigned_payload(signed(), lambda p: p.update(counter=99)), "bad_signature"),
        (lambda: signed(target="node:lamp-0043"), "wrong_target"),
        (lambda: signed(target="group:district-8"), "wrong_target"),
        (lambda: signed(expires=NOW), "expired"),
        (lambda: signed(kind="config"), "wrong_kind"),
        (lambda: b"{}", "malformed"),
        (lambda: b"[" * 10_000 + b"]" * 10_000, "malformed"),
        (lambda: b" " * (300 * 1024), "malformed"),
        (lambda: signed() + b"\n", "malformed"),
    ],
)
def test_each_refusal_has_its_reason_and_a_log_line(make, reason, counters, caplog):
    data = make()
    with caplog.at_level(logging.WARNING, logger="edge_agent.fleet"), pytest.raises(Refused) as exc:
        check(data, counters)
    assert exc.value.reason == reason
    line = caplog.records[-1].getMessage()
    assert line.startswith("event=signed_refused kind=command ") and f" reason={reason} " in line, line
    assert not counters.path.exists()  # a refusal records nothing


def test_the_counter_goes_up_per_kind_and_a_replay_or_an_older_one_is_refused(counters, caplog):
    five = signed(counter=5)
    assert accept(five, kind="command", trust=TRUST, audience=LAMP, counters=counters, now=NOW).counter == 5
    with pytest.raises(Refused) as exc:
        check(five, counters)
    assert exc.value.reason == "replayed"
    for older in (signed(counter=4), signed(counter=5, body={"do": "restart"})):
        with pytest.raises(Refused) as exc:
            check(older, counters)
        assert exc.value.reason == "older" and "not above 5" in str(exc.value)
    assert check(signed(counter=6), counters).counter == 6
    assert check(signed("config", {"x": 1}, counter=1), counters, kind="config").counter == 1  # its own
    # a restart reads the same record
    again = CounterStore(counters.path)
    with pytest.raises(Refused, match="replayed"):
        check(five, again)


def test_verify_records_nothing_and_accept_records_before_it_returns(counters):
    check(signed(counter=7), counters)
    assert counters.last("command") == (0, "")
    v = accept(signed(counter=7), kind="command", trust=TRUST, audience=LAMP, counters=counters, now=NOW)
    assert counters.last("command") == (7, v.digest)


def test_sign_refuses_what_could_never_verify():
    for kwargs in ({"target": "lamp-0042"}, {"target": "node:../x"}, {"counter": 0}, {"expires": NOW - 60}):
        with pytest.raises(ValueError):
            signed(**kwargs)
    with pytest.raises(ValueError, match="kind"):
        signed(kind="shell")
    with pytest.raises(canonical.NotCanonical, match="float"):
        signed(body={"t": 1.5})


@st.composite
def mutations(draw, data: bytes):
    """A different byte string: one byte changed, inserted or removed, or the end cut off."""
    how = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
    i = draw(st.integers(0, len(data) - 1))
    if how == "flip":
        out = data[:i] + bytes([data[i] ^ (1 << draw(st.integers(0, 7)))]) + data[i + 1 :]
    elif how == "set":
        out = data[:i] + bytes([draw(st.integers(0, 255).filter(lambda b: b != data[i]))]) + data[i + 1 :]
    elif how == "insert":
        out = data[:i] + bytes([draw(st.integers(0, 255))]) + data[i:]
    elif how == "delete":
        out = data[:i] + data[i + 1 :]
    else:
        out = data[:i]
    assert out != data
    return out


SAMPLE = signed(body={"do": "reload", "why": "a new broker", "n": [1, 2, 3]})


@given(mutations(SAMPLE))
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_change_of_any_byte_is_refused(tmp_path, mutated):
    store = CounterStore(tmp_path / "counters.json")
    with pytest.raises(Refused) as exc:
        check(mutated, store)
    assert exc.value.reason in {"malformed", "bad_signature", "unknown_key"}, exc.value


def test_every_single_byte_flip_is_refused(counters):
    """Exhaustively, not by sampling: every bit of every byte of one object."""
    data = signed()
    assert check(data, counters)
    for i in range(len(data)):
        for bit in range(8):
            bad = data[:i] + bytes([data[i] ^ (1 << bit)]) + data[i + 1 :]
            with pytest.raises(Refused):
                verify(bad, kind="command", trust=TRUST, audience=LAMP, counters=counters, now=NOW)
