"""The node's remote configuration (edge_agent/fleet/remote_config.py): a signed offer checked
like a local file, recorded before it is applied, tried, kept as good or reverted; a trial a
stop interrupted is reverted at the next start; nothing a push sends moves or empties the
queue."""

from __future__ import annotations

import json
import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.config import parse_config_text
from edge_agent.fleet.keys import OperatorKey, TrustStore
from edge_agent.fleet.refusal import Refused
from edge_agent.fleet.remote_config import RemoteConfig
from edge_agent.fleet.signed import Audience, sign

NOW = 1_800_000_000
OPERATOR = OperatorKey(bytes(range(32)))
STRANGER = OperatorKey(bytes(range(1, 33)))

BASE = """\
node: {{id: lamp-0042}}
state_dir: {state}
flush_interval: {flush}
mqtt: {{broker: "mqtt://127.0.0.1:1883"}}
sensors:
  - {{name: air, type: bme680}}
"""


def text(state, flush="10s") -> str:
    return BASE.format(state=state, flush=flush)


def offer_bytes(yaml_text: str, counter: int, *, key=OPERATOR, target="node:lamp-0042", body=None) -> bytes:
    return sign(
        "config",
        {"yaml": yaml_text} if body is None else body,
        key=key,
        target=target,
        counter=counter,
        expires=NOW + 3600,
        issued=NOW - 60,
    )


@pytest.fixture
def node(tmp_path):
    state = str(tmp_path / "state")
    local = parse_config_text(text(state), "node.yaml")
    rc = RemoteConfig(
        state,
        TrustStore([OPERATOR.public]),
        Audience("lamp-0042", frozenset({"district-7"})),
        now=lambda: NOW,
    )
    return rc, local, state


def test_an_offer_is_checked_recorded_tried_and_kept(node):
    rc, local, state = node
    offer = rc.offer(offer_bytes(text(state, flush="30s"), 1), local)
    assert offer.cfg.flush_interval == 30.0 and rc.trial() is None  # nothing recorded yet
    held = rc.accept(offer)
    assert rc.trial() == held and rc.good() is None
    assert rc.state()["outcome"] == "trial" and rc.state()["counter"] == 1
    assert rc.confirm()["outcome"] == "applied"
    assert rc.good() == held and rc.trial() is None
    assert rc.at_start(local).flush_interval == 30.0  # kept across restarts, over the local file
    for name in ("config-good.json", "config-state.json", "counters.json"):
        assert stat.S_IMODE(os.stat(os.path.join(state, "fleet", name)).st_mode) == 0o600


def test_the_retained_offer_coming_again_is_not_reported(node):
    rc, local, state = node
    data = offer_bytes(text(state, flush="30s"), 3)
    rc.accept(rc.offer(data, local))
    rc.confirm()
    with pytest.raises(Refused) as exc:
        rc.offer(data, local)  # the broker hands the retained one over at each connect
    assert exc.value.reason == "replayed" and rc.refuse(exc.value) is None
    assert rc.state()["outcome"] == "applied"


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda st: offer_bytes(text(st), 1, key=STRANGER), "unknown_key"),
        (lambda st: offer_bytes(text(st), 1, target="node:lamp-0043"), "wrong_target"),
        (lambda st: offer_bytes(text(st), 1, target="group:district-8"), "wrong_target"),
        (lambda st: offer_bytes(text(st), 1, body={"yaml": 5}), "malformed"),
        (lambda st: offer_bytes(text(st), 1, body={"yaml": "x", "more": "y"}), "malformed"),
        (lambda st: offer_bytes("node: {id: lamp-0042}\nsensors: 5\n", 1), "invalid_config"),
        (lambda st: offer_bytes("a: [\n", 1), "invalid_config"),
        (lambda st: offer_bytes(text(st).replace("lamp-0042", "lamp-0099"), 1), "immutable"),
        (lambda st: offer_bytes(text(st + "-elsewhere"), 1), "immutable"),
        (lambda st: offer_bytes(text(st), 1)[:-3] + b'"}]', "malformed"),
    ],
    ids=[
        "unknown key",
        "another node",
        "another group",
        "body not text",
        "body with more",
        "invalid configuration",
        "not yaml",
        "another node id",
        "the queue moved",
        "damaged envelope",
    ],
)
def test_a_bad_offer_is_refused_with_its_reason_and_nothing_kept(node, make, reason):
    rc, local, state = node
    with pytest.raises(Refused) as exc:
        rc.offer(make(state), local)
    assert exc.value.reason == reason
    report = rc.refuse(exc.value)
    assert report is not None and report["outcome"] == "rejected" and report["reason"] == reason
    assert rc.trial() is None and rc.good() is None
    assert rc.at_start(local) == local


def test_a_group_offer_reaches_the_groups_node(node):
    rc, local, state = node
    offer = rc.offer(offer_bytes(text(state, flush="20s"), 1, target="group:district-7"), local)
    assert offer.cfg.flush_interval == 20.0


def test_an_older_offer_is_refused_after_a_newer_was_accepted(node):
    rc, local, state = node
    rc.accept(rc.offer(offer_bytes(text(state, flush="30s"), 5), local))
    with pytest.raises(Refused) as exc:
        rc.offer(offer_bytes(text(state, flush="20s"), 4), local)
    assert exc.value.reason == "older"


def test_a_trial_that_fails_reverts_to_the_last_good_then_to_the_local_file(node):
    rc, local, state = node
    rc.accept(rc.offer(offer_bytes(text(state, flush="30s"), 1), local))
    rc.confirm()
    rc.accept(rc.offer(offer_bytes(text(state, flush="5s"), 2), local))
    back = rc.revert(local, "the uplink did not come back within 60 s")
    assert back.flush_interval == 30.0 and rc.trial() is None
    assert rc.state()["outcome"] == "reverted" and rc.state()["counter"] == 2
    with pytest.raises(Refused):  # a reverted configuration is never tried again
        rc.offer(offer_bytes(text(state, flush="5s"), 2), local)
    rc2 = RemoteConfig(state, rc.trust, rc.audience, now=lambda: NOW)
    assert rc2.at_start(local).flush_interval == 30.0  # the good one, across a restart
    os.unlink(os.path.join(state, "fleet", "config-good.json"))
    rc.accept(rc.offer(offer_bytes(text(state, flush="5s"), 3), local))
    assert rc.revert(local, "no link") == local  # no good one: the local file


def test_a_trial_a_stop_interrupted_is_reverted_at_the_next_start(node):
    rc, local, state = node
    rc.accept(rc.offer(offer_bytes(text(state, flush="30s"), 1), local))
    rc.confirm()
    rc.accept(rc.offer(offer_bytes(text(state, flush="5s"), 2), local))
    # the agent is killed during the trial; the next start:
    rc2 = RemoteConfig(state, rc.trust, rc.audience, now=lambda: NOW)
    assert rc2.at_start(local).flush_interval == 30.0
    assert rc2.trial() is None and rc2.state()["outcome"] == "reverted"
    assert "stopped during the trial" in rc2.state()["detail"]


def test_kept_files_that_are_damaged_fall_back_to_the_local_file(node):
    rc, local, state = node
    rc.accept(rc.offer(offer_bytes(text(state, flush="30s"), 1), local))
    rc.confirm()
    good = os.path.join(state, "fleet", "config-good.json")
    with open(good, "wb") as f:
        f.write(b"\x00garbage")
    assert rc.at_start(local) == local
    with open(good, "w") as f:  # a good one this version no longer accepts
        json.dump({"yaml": "sensors: 5", "counter": 1, "sha256": "0", "key": "k", "config_hash": "h"}, f)
    assert rc.at_start(local) == local
    assert not os.path.exists(good) and os.path.exists(good.replace("good", "good.refused"))


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=400))
def test_any_text_is_applied_or_refused_with_a_reason(tmp_path_factory, body):
    state = str(tmp_path_factory.mktemp("n") / "state")
    rc = RemoteConfig(state, TrustStore([OPERATOR.public]), Audience("lamp-0042"), now=lambda: NOW)
    local = parse_config_text(text(state), "node.yaml")
    try:
        offer = rc.offer(offer_bytes(body, 1), local)
    except Refused as exc:
        assert exc.reason in ("invalid_config", "immutable", "malformed")
    else:
        assert offer.cfg.node_id == "lamp-0042"
