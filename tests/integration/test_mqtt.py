"""The one MQTT client set-up (edge_agent/node/mqtt.py) against a real Mosquitto: a password
from a file, TLS verified by default, mutual TLS, MQTT 5 and 3.1.1, clean and kept sessions."""

from __future__ import annotations

import logging
import ssl
import time

import pytest
from helpers import BROKER_USER as USER
from helpers import authenticated_broker as _authenticated
from helpers import tls_listener as _tls

from edge_agent.config import load_config
from edge_agent.node.mqtt import ClientSettings, client_for_url, connect, make_client, new_client, read_secret


def _connack(url, settings, timeout=10.0):
    """Connect as ``settings`` say and wait for the CONNACK: (reason code, session present),
    (None, None) when the link went down without one."""
    client, broker = client_for_url(url, settings)
    got = {}
    client.on_connect = lambda c, u, flags, rc, props: got.update(rc=rc, present=flags.session_present)
    connect(client, broker, settings)
    try:
        deadline = time.monotonic() + timeout
        while "rc" not in got and time.monotonic() < deadline:
            if client.loop(timeout=0.1) != 0:
                break
        assert got or time.monotonic() < deadline, "neither a CONNACK nor a lost link"
        return got.get("rc"), got.get("present")
    finally:
        client.disconnect()
        client.loop(timeout=0.1)


@pytest.mark.broker
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_password_from_a_file_logs_in_and_a_wrong_one_or_none_is_refused(
    broker_factory, tmp_path, mqtt_password, protocol
):
    value, path = mqtt_password
    b = _authenticated(broker_factory, tmp_path, value)
    rc, _ = _connack(b.url, ClientSettings("t-good", protocol, username=USER, password_file=path))
    assert not rc.is_failure, rc
    wrong = tmp_path / "wrong"
    wrong.write_text("not-" + value + "\n")
    rc, _ = _connack(b.url, ClientSettings("t-wrong", protocol, username=USER, password_file=str(wrong)))
    assert rc.is_failure, rc
    rc, _ = _connack(b.url, ClientSettings("t-anon", protocol))
    assert rc.is_failure, rc


@pytest.mark.broker
def test_the_password_is_never_logged(broker_factory, tmp_path, mqtt_password, caplog):
    value, path = mqtt_password
    b = _authenticated(broker_factory, tmp_path, value)
    settings = ClientSettings("t-log", username=USER, password_file=path)
    client, broker = client_for_url(b.url, settings)
    client.enable_logger(logging.getLogger("paho-test"))
    with caplog.at_level(logging.DEBUG):
        connect(client, broker, settings)
        client.loop(timeout=1.0)
        client.disconnect()
    assert "CONNECT" in caplog.text  # paho did log the exchange...
    assert value not in caplog.text and value not in repr(settings)  # ...but not the password


@pytest.mark.broker
def test_tls_is_verified_against_the_ca_and_by_default_against_the_system_cas(broker_factory, pki, tmp_path):
    b = broker_factory(_tls(pki))
    url = f"mqtts://127.0.0.1:{b.port}"
    rc, _ = _connack(url, ClientSettings("t-tls", ca_file=f"{pki}/ca.pem"))
    assert not rc.is_failure
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        _connack(url, ClientSettings("t-system-cas"))  # the test CA is not the system's
    with pytest.raises(ssl.SSLCertVerificationError):
        _connack(url, ClientSettings("t-other-ca", ca_file=f"{pki}/other-ca.pem"))


@pytest.mark.broker
def test_mutual_tls_with_a_password(broker_factory, pki, tmp_path, mqtt_password):
    value, path = mqtt_password
    b = _authenticated(broker_factory, tmp_path, value, _tls(pki, require_cert=True))
    url = f"mqtts://127.0.0.1:{b.port}"
    full = ClientSettings(
        "t-mtls",
        ca_file=f"{pki}/ca.pem",
        cert_file=f"{pki}/client.pem",
        key_file=f"{pki}/client.key",
        username=USER,
        password_file=path,
    )
    rc, _ = _connack(url, full)
    assert not rc.is_failure, rc
    try:  # no client certificate: the handshake fails, or (TLS 1.3) the link drops after it
        rc, _ = _connack(
            url, ClientSettings("t-no-cert", ca_file=f"{pki}/ca.pem", username=USER, password_file=path)
        )
    except ssl.SSLError:
        rc = None
    assert rc is None


@pytest.mark.broker
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_kept_session_is_there_at_the_next_connect_and_a_clean_one_is_not(broker, protocol):
    kept = ClientSettings(f"t-kept-{protocol}", protocol, session_expiry=3600)
    assert _connack(broker.url, kept)[1] is False  # first time: nothing to resume
    assert _connack(broker.url, kept)[1] is True
    clean = ClientSettings(f"t-kept-{protocol}", protocol)
    assert _connack(broker.url, clean)[1] is False


def test_settings_from_the_node_configuration(tmp_path, mqtt_password):
    value, path = mqtt_password
    conf = tmp_path / "node.yaml"
    conf.write_text(f"""\
node: {{id: cfg-node}}
mqtt:
  broker: mqtts://127.0.0.1:8883
  protocol: "3.1.1"
  keepalive: 45s
  session_expiry: 10min
  username: cfg-node
  password_file: {path}
sensors:
  - {{name: air, type: bme680}}
""")
    cfg = load_config(conf)
    s = ClientSettings.from_config(cfg.mqtt, "id-1")
    assert (s.client_id, s.protocol, s.keepalive) == ("id-1", "3.1.1", 45)
    assert (s.session_expiry, s.persistent) == (600, True)
    assert (s.username, s.password_file) == ("cfg-node", path)
    assert not ClientSettings.from_config(cfg.mqtt, "id-2", persistent=False).persistent
    assert read_secret(path) == value
    client = make_client(cfg, "id-3", cfg.mqtt.broker)
    assert client._client_id == b"id-3" and client._username == b"cfg-node"
    assert client._password == value.encode()
    assert client._ssl_context is not None and client._ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert client._ssl_context.check_hostname


def test_settings_that_cannot_work_are_refused_before_any_connect(tmp_path):
    with pytest.raises(ValueError, match="cert_file and key_file"):
        ClientSettings("x", cert_file="client.pem")
    with pytest.raises(ValueError, match="needs a username"):
        ClientSettings("x", password_file="pw")
    with pytest.raises(ValueError, match="protocol"):
        ClientSettings("x", protocol="4")
    with pytest.raises(ValueError, match="broker URL"):
        client_for_url("http://127.0.0.1", ClientSettings("x"))
    with pytest.raises(OSError, match=r"mqtt.password_file .*missing: No such file"):
        new_client(
            ClientSettings("x", username="u", password_file=str(tmp_path / "missing")),
            client_for_url("mqtt://127.0.0.1", ClientSettings("x"))[1],
        )
