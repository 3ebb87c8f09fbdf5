"""The one MQTT client set-up: a paho-mqtt 2.x client from a broker's settings.

The uplink, ``commission`` and ``tail`` (and later the backbone's ingest workers) all
make their client here, so each of them can reach the same brokers the same way:
MQTT 5 or 3.1.1, a client id and a clean or persistent session, TLS verified by
default (the chain against ``ca_file`` or the system's CAs, and the host name), a
client certificate and key for mutual TLS, a username and a password read from a
file, a keepalive. The password is read when the client is made, handed to paho
and never logged; settings hold only the file's path.

Callers set their callbacks, then ``connect()`` and drive the network loop
themselves (the uplink through paho's external-loop interface, the others with
``loop()`` or ``loop_start()``).
"""

from __future__ import annotations

import logging
import re
import select
import socket
import ssl
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.config import AgentConfig, BrokerConfig, MqttConfig, parse_broker_url

log = logging.getLogger("edge_agent.mqtt")

PROTOCOLS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}


@dataclass(frozen=True)
class ClientSettings:
    """How to log in to a broker; the broker's URL (and so TLS or not) comes separately.

    ``session_expiry`` is how long (s) the broker keeps the session, its subscriptions
    and queued messages, after a disconnect: 0 asks for a clean session (MQTT 3.1.1
    knows only clean or kept, so any positive value keeps it there).
    """

    client_id: str
    protocol: str = "5"
    keepalive: float = 30.0
    session_expiry: float = 0.0
    ca_file: str | None = None  # None: the system's CAs
    cert_file: str | None = None  # with key_file: a client certificate for mutual TLS (PEM)
    key_file: str | None = None
    username: str | None = None
    password_file: str | None = None  # the password on its first line

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"MQTT protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")
        if self.password_file is not None and self.username is None:
            raise ValueError("a password_file needs a username")

    @property
    def persistent(self) -> bool:
        return self.session_expiry > 0

    @classmethod
    def from_config(cls, m: MqttConfig, client_id: str, *, persistent: bool | None = None) -> ClientSettings:
        """The node's settings (``mqtt:`` in its configuration). ``persistent=False`` asks for
        a clean session whatever ``mqtt.session_expiry`` says (commission's short check)."""
        keep = m.session_expiry > 0 if persistent is None else persistent
        return cls(
            client_id=client_id,
            protocol=m.protocol,
            keepalive=m.keepalive,
            session_expiry=m.session_expiry if keep else 0.0,
            ca_file=m.ca_file,
            cert_file=m.cert_file,
            key_file=m.key_file,
            username=m.username,
            password_file=m.password_file,
        )


def read_secret(path: str) -> str:
    """A secret from a file (first line, without its newline); the value is never logged."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise OSError(f"mqtt.password_file {path}: {_why(exc)}") from None


def tls_context(
    ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> ssl.SSLContext:
    """A client context that verifies the broker's chain (``ca_file``, else the system's CAs)
    and host name, with a client certificate when one is given. A file it cannot use is
    an OSError naming the setting and the file."""
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise OSError(f"mqtt.ca_file {ca_file}: {_why(exc)}") from None
    if cert_file:
        try:
            ctx.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise OSError(f"mqtt.cert_file {cert_file} / mqtt.key_file {key_file}: {_why(exc)}") from None
    return ctx


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"not a usable certificate or key ({exc.reason or exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


# Why a connection to a broker failed, and what to do about it: what a node logs, and what
# `commission` and `tail` print, so a technician reads the cause and not a guess.
_PLAINTEXT_REPLY = {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"}
_CERT_REFUSED = (
    "CERTIFICATE_REQUIRED",
    "BAD_CERTIFICATE",
    "UNKNOWN_CA",
    "CERTIFICATE_UNKNOWN",
    "HANDSHAKE_FAILURE",
)
CLOSED_BEFORE_CONNACK = (
    "the broker closed the connection before accepting it: a TLS port spoken to in plaintext "
    "(use mqtts://), a client certificate it requires (cert_file, key_file) or refuses, or its "
    "connection limit"
)


def _explain_tls(reason: str, text: str, where: str) -> tuple[str, str]:
    if reason in _PLAINTEXT_REPLY:
        return (
            f"the broker answered in plaintext ({reason})",
            f"{where} has no TLS listener: use the broker's TLS port, or mqtt:// where plaintext is allowed",
        )
    if any(r in reason for r in _CERT_REFUSED):
        why = "it requires a client certificate" if "REQUIRED" in reason else "the client certificate"
        return (
            f"the broker refused the TLS handshake ({reason}): {why}",
            "it wants a client certificate its CA signed: check cert_file and key_file",
        )
    return f"TLS failed: {reason or text}", "check ca_file, cert_file and key_file"


_SSL_REASON = re.compile(r"\[SSL: ([A-Z0-9_]+)\]")
_TLS_EOF = "EOF occurred in violation of protocol"  # ssl.SSLEOFError's text
_NO_CERT_WHAT = (
    "the broker ended the TLS connection before accepting it, and this node offers no client certificate"
)
_NO_CERT_HINT = (
    "it likely requires one (require_certificate): set cert_file and key_file to a certificate its CA signed"
)
_CERT_EOF_HINT = (
    "it may refuse this client certificate (cert_file, key_file: signed by the CA the broker "
    "trusts, not expired?), or be at its connection limit"
)


def closed_before_connack(
    broker: BrokerConfig, cause: str | None = None, *, has_cert: bool = False
) -> tuple[str, str]:
    """(what, what to check) when the broker closed the link before its CONNACK; ``cause``
    is paho's last error line for the link (``LinkLog.cause``), if any, and ``has_cert``
    whether this client offered a certificate. With TLS 1.3 a refused client certificate
    comes after connect(): as an alert on the first read, or (Mosquitto, no certificate
    offered) as the bare end of the TLS stream."""
    m = _SSL_REASON.search(cause or "")
    if m:
        return _explain_tls(m.group(1), cause or "", f"{broker.host}:{broker.port}")
    if not broker.tls:  # no TLS, so no certificate: a TLS port, or a limit
        return (
            "the broker closed the connection before accepting it",
            "a TLS port spoken to in plaintext (use mqtts:// and ca_file), or its connection limit",
        )
    if _TLS_EOF in (cause or ""):
        if not has_cert:
            return (
                _NO_CERT_WHAT,
                _NO_CERT_HINT,
            )
        return (
            "the broker ended the TLS connection before accepting it: the client certificate?",
            _CERT_EOF_HINT,
        )
    return "closed before CONNACK", CLOSED_BEFORE_CONNACK


class LinkLog:
    """paho's own lines for one client (``client.on_log``): a TLS alert read after the
    handshake (a refused client certificate) reaches us only as one of them. An error
    before the CONNACK that tells why the broker said no goes to the log as a warning with
    its cause and what to check, any other at debug; the first since the CONNECT is kept
    in ``cause``."""

    def __init__(self, broker: BrokerConfig, *, has_cert: bool = False) -> None:
        self.broker = broker
        self.has_cert = has_cert
        self.cause: str | None = None
        self.connacked = False

    def explain(self) -> tuple[str, str]:
        """What ``closed_before_connack`` makes of this link's newest error."""
        return closed_before_connack(self.broker, self.cause, has_cert=self.has_cert)

    def __call__(self, client: mqtt.Client, userdata: object, level: int, buf: str) -> None:
        if level == mqtt.MQTT_LOG_DEBUG:
            if buf.startswith("Sending CONNECT"):
                self.connacked, self.cause = False, None
            elif buf.startswith("Received CONNACK"):
                self.connacked = True
            return
        if level != mqtt.MQTT_LOG_ERR:
            return
        if self.cause is not None:  # what follows the first error is its echo
            log.debug("event=mqtt_link_error broker=%s error=%r", self.broker.url, buf)
            return
        self.cause = buf
        what, hint = self.explain()
        if not self.connacked and hint != CLOSED_BEFORE_CONNACK and self.broker.tls:
            log.warning("event=mqtt_tls_refused broker=%s error=%r hint=%r", self.broker.url, what, hint)
        else:
            log.debug("event=mqtt_link_error broker=%s error=%r", self.broker.url, buf)


def explain(exc: BaseException, broker: BrokerConfig) -> tuple[str, str]:
    """(what went wrong, what to check) for an exception of ``connect``."""
    where = f"{broker.host}:{broker.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the broker's certificate does not verify: {exc.verify_message or exc}",
            (
                "ca_file must hold the CA that signed the broker's certificate and the URL's host "
                "must be a name in it; check the node's clock too (certificates have dates)"
            ),
        )
    if isinstance(exc, ssl.SSLError):
        return _explain_tls(exc.reason or "", str(exc), where)
    if isinstance(exc, ConnectionResetError) and broker.tls:  # a plaintext listener drops a ClientHello
        return (
            "the broker reset the connection during the TLS handshake",
            f"{where} may have no TLS listener (mqtts:// to a plaintext port?), or it refuses this client",
        )
    if isinstance(exc, ConnectionRefusedError):
        return (
            "connection refused",
            f"nothing listens on {where}: check the URL's port and that the broker is up",
        )
    if isinstance(exc, socket.gaierror):
        return f"{broker.host} does not resolve ({exc.strerror})", "check the URL's host name and the DNS"
    if isinstance(exc, TimeoutError | socket.timeout):
        return (
            f"no answer from {where}",
            "a firewall may drop the port; check the route and with the backbone team",
        )
    if isinstance(exc, OSError):
        return (
            f"unreachable: {exc.strerror or exc}",
            "check the network (ping, DNS) and that the broker is up",
        )
    return str(exc), "check the configuration's mqtt section"


def new_client(settings: ClientSettings, broker: BrokerConfig) -> mqtt.Client:
    """A paho client set up for ``broker``: protocol, session, TLS, credentials. Not yet connected.

    Raises OSError for a CA, certificate, key or password file it cannot read and
    ssl.SSLError for a certificate or key it cannot use.
    """
    protocol = PROTOCOLS[settings.protocol]
    # MQTT 3.1.1 asks for a clean or kept session in the client; MQTT 5 at connect().
    clean_session = not settings.persistent if protocol == mqtt.MQTTv311 else None
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=settings.client_id,
        protocol=protocol,
        clean_session=clean_session,
    )
    client.on_log = LinkLog(broker, has_cert=bool(settings.cert_file))
    if broker.tls:
        client.tls_set_context(tls_context(settings.ca_file, settings.cert_file, settings.key_file))
    if settings.username is not None:
        password = read_secret(settings.password_file) if settings.password_file else None
        client.username_pw_set(settings.username, password)
    return client


def connect(client: mqtt.Client, broker: BrokerConfig, settings: ClientSettings) -> None:
    """Send CONNECT (TCP and, for mqtts://, the TLS handshake happen here); the CONNACK
    comes to ``on_connect`` from the caller's network loop.

    Raises OSError (ssl.SSLError included) when the broker cannot be reached or its
    certificate does not verify.
    """
    kwargs: dict = {}
    if settings.protocol == "5":
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = int(settings.session_expiry)
        kwargs = {"clean_start": not settings.persistent, "properties": props}
    client.connect(broker.host, broker.port, keepalive=int(settings.keepalive), **kwargs)


def client_for_url(url: str, settings: ClientSettings) -> tuple[mqtt.Client, BrokerConfig]:
    """A client for a broker given by URL (``mqtt://host[:port]``, ``mqtts://host[:port]``),
    as ``tail`` and the backbone's workers take it on their command line; not yet connected.

    Raises ValueError for a URL that is not a broker's, and what ``new_client`` raises.
    """
    broker = parse_broker_url(url)
    return new_client(settings, broker), broker


def make_client(
    cfg: AgentConfig, client_id: str, broker: BrokerConfig, *, persistent: bool = False
) -> mqtt.Client:
    """A client for one of the node's brokers, from its configuration. Not yet connected."""
    return new_client(ClientSettings.from_config(cfg.mqtt, client_id, persistent=persistent), broker)


def write_later(client: mqtt.Client, userdata: object, sock: object) -> None:
    """paho's hook for an external loop that a write is waiting: network_turn() looks itself."""


def network_turn(client: mqtt.Client | None, timeout: float) -> int:
    """One turn of paho's network work, waiting at most ``timeout`` for the socket.

    What ``client.loop()`` does, through the interface paho documents for external
    loops, so paho never sets up the socket pair it uses to wake a network thread:
    that would cost a send() per publish, on this thread, for nothing.
    """
    sock = client.socket() if client is not None else None
    if client is None or sock is None:
        return mqtt.MQTT_ERR_NO_CONN
    pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted wait in the socket
    if pending is not None and pending() > 0:
        readable, writable = True, client.want_write()
    else:
        try:
            r, w, _ = select.select([sock], [sock] if client.want_write() else [], [], timeout)
            readable, writable = bool(r), bool(w)
        except (OSError, ValueError):  # closed under us: the read reports the lost link
            readable, writable = True, False
    if readable:
        rc = client.loop_read()
        if rc or client.socket() is None:
            return rc
    if writable or client.want_write():
        rc = client.loop_write()
        if rc or client.socket() is None:
            return rc
    return client.loop_misc()
