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


def test_a_tls_refusal_after_the_handshake_is_told_from_paho_s_error_line(caplog):
    """TLS 1.3: a broker refuses a client certificate on the first read, which paho reports
    only as an error line; the first line since the CONNECT is the cause, not its echo."""
    import paho.mqtt.client as mqtt

    from edge_agent.node.mqtt import LinkLog

    link = LinkLog(TLS, has_cert=True)
    link(None, None, mqtt.MQTT_LOG_DEBUG, "Sending CONNECT (u0, p0, wr0, wq0, wf0, c1, k60)")
    alert = "failed to receive on socket: [SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca (_ssl.c:2580)"
    with caplog.at_level("DEBUG", logger="edge_agent.mqtt"):
        link(None, None, mqtt.MQTT_LOG_ERR, alert)
        link(None, None, mqtt.MQTT_LOG_ERR, "Client is not connected. Socket: None).")
    what, hint = link.explain()
    assert "UNKNOWN_CA" in what and "client certificate" in what and "cert_file" in hint
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "event=mqtt_tls_refused" in warned[0] and "cert_file" in warned[0]


@pytest.mark.parametrize(
    ("broker", "cause", "has_cert", "what", "hint"),
    [
        (
            TLS,
            "failed to receive on socket: EOF occurred in violation of protocol (_ssl.c:2427)",
            False,
            "offers no client certificate",
            "require_certificate",
        ),
        (
            TLS,
            "failed to receive on socket: EOF occurred in violation of protocol (_ssl.c:2427)",
            True,
            "the client certificate",
            "signed by the CA",
        ),
        (PLAIN, None, False, "closed the connection before accepting it", "use mqtts://"),
        (TLS, None, True, "closed before CONNACK", "connection limit"),
    ],
)
def test_a_link_closed_before_connack_gets_the_cause_its_setup_allows(broker, cause, has_cert, what, hint):
    from edge_agent.node.mqtt import closed_before_connack

    got_what, got_hint = closed_before_connack(broker, cause, has_cert=has_cert)
    assert what in got_what and hint in got_hint and "firewall" not in got_hint


def test_after_the_connack_a_lost_link_is_no_refusal(caplog):
    import paho.mqtt.client as mqtt

    from edge_agent.node.mqtt import LinkLog

    link = LinkLog(TLS)
    link(None, None, mqtt.MQTT_LOG_DEBUG, "Sending CONNECT (u0, p0, wr0, wq0, wf0, c1, k60)")
    link(None, None, mqtt.MQTT_LOG_DEBUG, "Received CONNACK (0, Success)")
    with caplog.at_level("DEBUG", logger="edge_agent.mqtt"):
        link(
            None,
            None,
            mqtt.MQTT_LOG_ERR,
            "failed to receive on socket: EOF occurred in violation of protocol",
        )
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
