"""What a node logs, and `commission` prints, when a broker cannot be reached: the cause
and what to check, for each way a connection fails (the integration tests meet the
TLS ones against a real Mosquitto)."""

from __future__ import annotations

import socket
import ssl

import pytest

from edge_agent.config import parse_broker_url
from edge_agent.node.mqtt import explain, read_secret, tls_context

TLS = parse_broker_url("mqtts://broker.example.net:8883")
PLAIN = parse_broker_url("mqtt://broker.example.net:1883")


def ssl_error(reason: str) -> ssl.SSLError:
    exc = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower()}")
    exc.reason = reason
    return exc


@pytest.mark.parametrize(
    ("exc", "broker", "what", "hint"),
    [
        (ssl_error("WRONG_VERSION_NUMBER"), TLS, "answered in plaintext", "has no TLS listener"),
        (ssl_error("TLSV13_ALERT_CERTIFICATE_REQUIRED"), TLS, "refused the TLS handshake", "cert_file"),
        (ssl_error("SSLV3_ALERT_BAD_CERTIFICATE"), TLS, "refused the TLS handshake", "cert_file"),
        (
            ConnectionResetError(104, "Connection reset by peer"),
            TLS,
            "during the TLS handshake",
            "plaintext port",
        ),
        (
            ConnectionRefusedError(111, "Connection refused"),
            PLAIN,
            "connection refused",
            "broker.example.net:1883",
        ),
        (socket.gaierror(-2, "Name or service not known"), PLAIN, "does not resolve", "DNS"),
        (TimeoutError("timed out"), PLAIN, "no answer", "firewall"),
        (OSError(101, "Network is unreachable"), PLAIN, "Network is unreachable", "network"),
    ],
)
def test_each_failure_gets_its_cause_and_what_to_check(exc, broker, what, hint):
    got_what, got_hint = explain(exc, broker)
    assert what in got_what and hint in got_hint


def test_a_certificate_that_does_not_verify_says_why():
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_message = "certificate has expired"
    what, hint = explain(exc, TLS)
    assert what.endswith("certificate has expired") and "clock" in hint


def test_a_missing_file_names_the_setting_and_the_file(tmp_path):
    with pytest.raises(OSError, match=r"mqtt.ca_file .*/nope.pem: No such file or directory"):
        tls_context(str(tmp_path / "nope.pem"))
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(OSError, match=r"mqtt.ca_file .*junk.pem: not a usable certificate"):
        tls_context(str(tmp_path / "junk.pem"))
    with pytest.raises(OSError, match=r"mqtt.password_file .*/pw: No such file"):
        read_secret(str(tmp_path / "pw"))
