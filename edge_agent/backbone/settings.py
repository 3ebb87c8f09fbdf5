"""An ingest worker's settings, checked when made, and what follows from them: its client
id, its topics (a shared subscription or a plain one) and its in-flight window."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_agent.node.mqtt import ClientSettings


@dataclass(frozen=True)
class IngestSettings:
    broker: str  # mqtt://host:port or mqtts://...
    db: str  # a libpq connection string or postgresql:// URL (a password: in a passfile)
    group: str = "ingest"
    slot: int = 0
    prefix: str = "edge"
    migrate: bool = False
    max_messages: int = 1000
    max_wait: float = 0.2  # s from a group's first message to its transaction
    idle: float = 0.01  # s without a message that ends a group early
    session_expiry: float = 86400.0
    mqtt: dict = field(default_factory=dict)  # ClientSettings' TLS and login fields
    protocol: str = "5"  # or "3.1.1"
    shared: bool | None = None  # a $share/GROUP/ subscription; None: with MQTT 5 only

    def __post_init__(self) -> None:
        if not self.group or any(c in self.group for c in "/+#"):
            raise ValueError(f"a group name is a topic level without / + #, got {self.group!r}")
        if self.slot < 0:
            raise ValueError(f"a slot is 0 or more, got {self.slot}")
        if self.max_messages < 1 or self.max_wait < 0 or self.idle < 0:
            raise ValueError("max_messages must be 1 or more, max_wait and idle 0 or more")
        if self.session_expiry <= 0:
            raise ValueError("the session must be persistent: session_expiry above 0")
        if self.protocol not in ("5", "3.1.1"):
            raise ValueError(f"the MQTT protocol is 5 or 3.1.1, got {self.protocol!r}")
        if not self.is_shared and self.slot != 0:
            raise ValueError(f"a plain subscription has one worker a group: slot 0, got {self.slot}")

    @property
    def is_shared(self) -> bool:
        return self.protocol == "5" if self.shared is None else self.shared

    @property
    def receive_maximum(self) -> int:
        """Two groups' worth: the next group arrives while one is written."""
        return min(2 * self.max_messages, 65535)

    @property
    def client_id(self) -> str:
        return f"ingest-{self.group}-{self.slot}"

    @property
    def topics(self) -> list[str]:
        base = f"$share/{self.group}/{self.prefix}/+" if self.is_shared else f"{self.prefix}/+"
        return [f"{base}/data/+", f"{base}/status", f"{base}/health"]

    def client_settings(self) -> ClientSettings:
        return ClientSettings(
            client_id=self.client_id, protocol=self.protocol, session_expiry=self.session_expiry, **self.mqtt
        )
