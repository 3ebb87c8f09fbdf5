"""Why a signed object or a bundle was refused: one exception, one reason code from a fixed list,
so the node's log line (``event=signed_refused reason=...``) and its report can be counted."""

from __future__ import annotations

from edge_agent.errors import EdgeAgentError

REASONS = {
    "malformed": "not a signed object of the expected form (size, nesting, JSON, fields)",
    "unknown_key": "signed by a key the node does not trust",
    "bad_signature": "the signature does not verify: the bytes are not what was signed",
    "wrong_kind": "signed as another kind of object",
    "wrong_target": "for another node or group",
    "expired": "its expiry has passed",
    "replayed": "the object last accepted, again",
    "older": "its counter is not above the last accepted of its kind",
    "counter_state": "the node's record of counters cannot be read",
    "wrong_platform": "a bundle for another platform",
    "oversize": "larger than the node's limits",
    "unsafe_member": "a bundle member that is no plain file, or an unsafe name",
    "unexpected_member": "a bundle member the manifest does not list, or listed twice",
    "corrupt_file": "a file whose size or SHA-256 is not the manifest's",
    "missing_file": "a file the manifest lists is not in the bundle",
    "failed_release": "a release that failed its trial: never tried again",
    "invalid_config": "a configuration the node would refuse from a file: what and where",
    "immutable": "a configuration that changes what cannot change while the node runs",
    "unknown_command": "a command not on the node's fixed list",
    "unsupported": "a command this node cannot carry out (an update without the launcher)",
    "revocation": "a key revocation the node refuses: a key it does not trust, or the last it does",
    "busy": "an update while another is under way",
    "corrupt_download": "a fetched bundle whose bytes are not the ones its command signed",
}


class Refused(EdgeAgentError, ValueError):
    """A signed object or bundle refused: ``reason`` (a key of REASONS) and ``detail``."""

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in REASONS, reason
        super().__init__(f"refused ({reason}): {detail}")
        self.reason = reason
        self.detail = detail
