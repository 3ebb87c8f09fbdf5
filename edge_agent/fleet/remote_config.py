"""A node's remote configuration: signed on ``{prefix}/{node}/config/set``, tried, kept or
reverted (docs/fleet.md, "Remote configuration").

An offer is a signed object of kind ``config`` (edge_agent.fleet.signed) whose body is
``{"yaml": TEXT}``: the whole node configuration, the text an operator would put in
node.yaml, validated exactly as that file is (config.parse_config_text). It must keep the
node's id and its queue's place (``immutable``: the queue is never moved, recreated or
emptied by a push). The order is the counters' (persist, then act):

1. ``offer``: every check, nothing recorded; a refusal says why (signed.Refused).
2. ``accept``: the counter recorded, the offer written as the *trial*; the caller applies
   it (the agent's reload path).
3. ``confirm`` once the uplink is back (the caller's test, within ``TRIAL`` seconds): the
   trial becomes the *good* one, kept across restarts. Or ``revert``: the good one (or the
   local file, when there is none) comes back, and the trial is recorded as reverted.

At a start (``at_start``), a trial still there means the agent stopped during it (a crash,
a kill, a reboot): it is reverted, never tried again. The good one, if any, is what the
node runs, in place of its local file.

Files, in the state directory's ``fleet/`` (0700), each written beside, fsynced and renamed
over (0600): ``config-good.json`` and ``config-trial.json`` (the text, its counter, the
envelope's SHA-256, the key id), ``config-state.json`` (the last outcome: what
``{prefix}/{node}/config/state`` carries, retained). Standard library and fleet only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from edge_agent.config import AgentConfig, parse_config_text, store_path
from edge_agent.errors import ConfigError
from edge_agent.files import TooLarge, read_at_most
from edge_agent.fleet import signed
from edge_agent.fleet.counters import CounterStore
from edge_agent.fleet.keys import TrustStore
from edge_agent.fleet.refusal import Refused

log = logging.getLogger("edge_agent.fleet")

TRIAL = 60.0  # s the uplink has to come back after a configuration is applied
KIND = "config"
_FILE_MAX = 512 * 1024  # bytes of one kept configuration (the YAML text is at most 256 KiB)


@dataclasses.dataclass(frozen=True)
class Held:
    """A remote configuration the node holds: its text and where it came from."""

    yaml: str
    counter: int
    sha256: str  # of the envelope it came in
    key: str
    config_hash: str

    def source(self) -> str:
        return f"remote configuration {self.counter} (key {self.key})"


@dataclasses.dataclass(frozen=True)
class Offer:
    """An offer that passed every check: the configuration it makes, not yet recorded."""

    verified: signed.Verified
    cfg: AgentConfig
    yaml: str


def _write(path: Path, value: dict) -> None:
    """``value`` as JSON at ``path``, atomically and durably, 0600."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, json.dumps(value, sort_keys=True).encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _read(path: Path) -> dict | None:
    """The JSON object at ``path``; None when there is none. A file that cannot be read or
    is not ours is logged and taken as none (the local file is the way back)."""
    try:
        value = json.loads(read_at_most(path, _FILE_MAX))
    except FileNotFoundError:
        return None
    except (OSError, TooLarge, ValueError) as exc:
        log.error("event=remote_config_unreadable path=%s error=%r: taken as none", path, str(exc))
        return None
    return value if isinstance(value, dict) else None


def _held(value: dict | None) -> Held | None:
    if value is None:
        return None
    try:
        return Held(
            str(value["yaml"]),
            int(value["counter"]),
            str(value["sha256"]),
            str(value["key"]),
            str(value["config_hash"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


class RemoteConfig:
    """The remote configuration of the node whose state directory is ``state_dir``."""

    def __init__(
        self,
        state_dir: str,
        trust: TrustStore,
        audience: signed.Audience,
        *,
        now: Any = time.time,
    ) -> None:
        self.dir = Path(state_dir) / "fleet"
        self.trust = trust
        self.audience = audience
        self.counters = CounterStore(self.dir / "counters.json")
        self.now = now
        self.good_path = self.dir / "config-good.json"
        self.trial_path = self.dir / "config-trial.json"
        self.state_path = self.dir / "config-state.json"

    # --- what the node holds ------------------------------------------------------------------
    def good(self) -> Held | None:
        return _held(_read(self.good_path))

    def trial(self) -> Held | None:
        return _held(_read(self.trial_path))

    def state(self) -> dict | None:
        """The last outcome, as ``config/state`` carries it."""
        return _read(self.state_path)

    def _record(self, outcome: str, held: Held | None, detail: str = "", **extra: Any) -> dict:
        state = {
            "outcome": outcome,  # applied, rejected, reverted, trial
            "counter": held.counter if held else None,
            "config_hash": held.config_hash if held else None,
            "detail": detail,
            "at": int(self.now()),
            **extra,
        }
        _write(self.state_path, state)
        log.log(
            logging.INFO if outcome in ("applied", "trial") else logging.WARNING,
            "event=remote_config_%s counter=%s hash=%s detail=%r",
            outcome,
            state["counter"],
            state["config_hash"],
            detail,
        )
        return state

    def at_start(self, local: AgentConfig) -> AgentConfig:
        """What the node runs at a start: a trial found is reverted (the agent stopped during
        it); then the good remote configuration, else ``local``. A good one that no longer
        validates (this version refuses it) is set aside for the local file."""
        trial = self.trial()
        if trial is not None:
            os.unlink(self.trial_path)
            self._record("reverted", trial, "the agent stopped during the trial of this configuration")
        good = self.good()
        if good is None:
            return local
        try:
            return self._parse(good.yaml, good.source(), local)
        except Refused as exc:
            os.replace(self.good_path, self.good_path.with_name("config-good.refused.json"))
            self._record("reverted", good, f"kept as good, now refused: {exc.detail}; running the local file")
            return local

    # --- an offer -----------------------------------------------------------------------------
    def _parse(self, text: str, source: str, current: AgentConfig) -> AgentConfig:
        try:
            cfg = parse_config_text(text, source)
        except ConfigError as exc:
            raise Refused("invalid_config", str(exc)) from None
        if cfg.node_id != current.node_id:
            raise Refused("immutable", f"node.id {cfg.node_id!r}: this node is {current.node_id!r}")
        if store_path(cfg) != store_path(current):
            raise Refused(
                "immutable",
                f"state_dir/store.path {store_path(cfg)}: the queue stays at {store_path(current)}",
            )
        return cfg

    def offer(self, data: bytes, current: AgentConfig) -> Offer:
        """Every check of a signed configuration (nothing recorded): its signature, kind,
        target, expiry and counter, then its text as a file's. Refused says why; the retained
        offer the node holds already comes back as ``replayed``."""
        v = signed.verify(
            data, kind=KIND, trust=self.trust, audience=self.audience, counters=self.counters, now=self.now()
        )
        body = v.body
        if not isinstance(body, dict) or set(body) != {"yaml"} or not isinstance(body["yaml"], str):
            raise Refused("malformed", 'a configuration\'s body is {"yaml": TEXT}')
        cfg = self._parse(body["yaml"], f"remote configuration {v.counter} (key {v.key_id})", current)
        return Offer(v, cfg, body["yaml"])

    def refuse(self, exc: Refused) -> dict | None:
        """A refused offer reported (``rejected``), unless it is the one held already."""
        if exc.reason == "replayed":
            return None
        return self._record("rejected", None, exc.detail, reason=exc.reason)

    def accept(self, offer: Offer) -> Held:
        """The offer's counter recorded, then the offer kept as the trial: apply it next."""
        v = offer.verified
        self.counters.record(KIND, v.counter, v.digest)
        held = Held(offer.yaml, v.counter, v.digest, v.key_id, offer.cfg.config_hash)
        _write(self.trial_path, dataclasses.asdict(held))
        self._record("trial", held, f"applied; the uplink has {TRIAL:g} s to come back")
        return held

    def confirm(self) -> dict | None:
        """The trial kept as the good configuration (the uplink came back)."""
        trial = self.trial()
        if trial is None:
            return None
        os.replace(self.trial_path, self.good_path)
        return self._record("applied", trial, "the uplink came back")

    def revert(self, local: AgentConfig, why: str) -> AgentConfig:
        """The trial dropped (recorded as reverted, ``why``); what to apply again: the good
        configuration, else ``local``."""
        trial = self.trial()
        if trial is not None:
            os.unlink(self.trial_path)
        self._record("reverted", trial, why)
        good = self.good()
        if good is None:
            return local
        try:
            return self._parse(good.yaml, good.source(), local)
        except Refused:
            return local
