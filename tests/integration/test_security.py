"""Security of the link: TLS verified by default, mutual TLS, passwords from files never logged,
plaintext to a remote broker refused, files written owner-only."""

from __future__ import annotations

import os
import re
import stat
import subprocess

import pytest
from helpers import Sink, agent_cmd, require_tool, run_agent_for

CONFIG = """\
node: {{id: sec-node}}
flush_interval: 300ms
clock: {{hold_unsynced: 0s}}
mqtt:
  broker: "{broker}"
  topic_prefix: sec
  reconnect: {{min: 300ms, max: 1s}}
{mqtt_extra}
sensors:
  - name: air
    type: bme680
    interval: 100ms
    heater: {{duration: 30ms}}
    channels: {{temperature: {{deadband: 0}}}}
    sim: {{temperature: {{mean: 20, amplitude: 5, period: 5s}}}}
"""


def run_agent(tmp_path, broker_url, mqtt_extra="", seconds=2.5):
    """The agent for ``seconds`` and at least 3 batches sealed: connected, the stop's drain
    delivers them, so ``delivered >= 3`` is counted, not timed."""
    return run_agent_for(tmp_path, CONFIG.format(broker=broker_url, mqtt_extra=mqtt_extra), seconds, sealed=3)


def tls_listener(pki, server="server", require_cert=False):
    opts = f"cafile {pki}/ca.pem\ncertfile {pki}/{server}.pem\nkeyfile {pki}/{server}.key\n"
    if require_cert:
        opts += "require_certificate true\n"
    return opts


def delivered(log):
    m = re.search(r"event=uplink_stop delivered=(\d+) ", log)
    return int(m.group(1)) if m else -1


@pytest.mark.broker
def test_tls_verified_connects_and_delivers(broker_factory, pki, tmp_path):
    b = broker_factory(tls_listener(pki))
    with Sink(b.port, ca=pki / "ca.pem") as sink:
        log = run_agent(tmp_path, f"mqtts://127.0.0.1:{b.port}", f"  ca_file: {pki}/ca.pem")
    assert "event=uplink_connected" in log and delivered(log) >= 3, log
    assert sum("/data/" in t for t, _ in sink.messages) >= 3


@pytest.mark.broker
@pytest.mark.parametrize(
    "server, ca, message",
    [
        ("server", "other-ca", "certificate does not verify: self-signed certificate"),
        ("wrong-host", "ca", "mismatch, certificate is not valid for .127.0.0.1."),
        ("expired", "ca", "certificate has expired"),
    ],
)
def test_bad_certificates_are_refused_with_a_clear_message(
    broker_factory, pki, tmp_path, server, ca, message
):
    b = broker_factory(tls_listener(pki, server))
    log = run_agent(tmp_path, f"mqtts://127.0.0.1:{b.port}", f"  ca_file: {pki}/{ca}.pem")
    assert "event=uplink_connected" not in log
    assert re.search(
        rf"event=uplink_connect_failed broker=mqtts://127\.0\.0\.1:{b.port} error=.*{message}", log
    ), log
    assert "event=batch_sealed" in log  # sampling and storing go on meanwhile


@pytest.mark.broker
def test_mutual_tls(broker_factory, pki, tmp_path):
    b = broker_factory(tls_listener(pki, require_cert=True))
    url = f"mqtts://127.0.0.1:{b.port}"
    with Sink(b.port, ca=pki / "ca.pem", cert=pki / "client.pem", key=pki / "client.key"):
        with_cert = run_agent(
            tmp_path / "a",
            url,
            f"  ca_file: {pki}/ca.pem\n  cert_file: {pki}/client.pem\n  key_file: {pki}/client.key",
        )
    assert "event=uplink_connected" in with_cert and delivered(with_cert) >= 3, with_cert
    without = run_agent(tmp_path / "b", url, f"  ca_file: {pki}/ca.pem")
    assert delivered(without) == 0, without
    # the cause is logged with what to check (it used to be a debug line, or nothing)
    assert re.search(r"event=uplink_connect_failed .*hint=.*client certificate", without), without


@pytest.mark.broker
def test_password_from_file_works_and_is_never_logged(broker_factory, tmp_path):
    passwd = tmp_path / "passwd"
    secret = f"s3cr3t-Tr0mb0ne-{os.getpid()}"
    subprocess.run(
        [
            require_tool("mosquitto_passwd", "the mosquitto package"),
            "-b",
            "-c",
            str(passwd),
            "sec-node",
            secret,
        ],
        check=True,
        capture_output=True,
    )
    os.chmod(passwd, 0o644)
    b = broker_factory(extra=f"password_file {passwd}\n")
    b.stop()
    b.conf.write_text(b.conf.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    b.start()
    pw = tmp_path / "mqtt-password"
    pw.write_text(secret + "\n")
    with Sink(b.port, user="sec-node", password=secret):
        good = run_agent(tmp_path / "a", b.url, f"  username: sec-node\n  password_file: {pw}")
    assert "event=uplink_connected" in good and delivered(good) >= 3, good
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-" + secret + "\n")
    bad = run_agent(tmp_path / "b", b.url, f"  username: sec-node\n  password_file: {wrong}", seconds=2.0)
    assert "event=uplink_connected" not in bad and "event=uplink_refused" in bad, bad
    for log in (good, bad):
        assert secret not in log


def test_plaintext_remote_broker_is_refused(tmp_path):
    cfg = tmp_path / "node.yaml"
    cfg.write_text(CONFIG.format(broker="mqtt://192.0.2.10:1883", mqtt_extra=""))
    out = subprocess.run(agent_cmd("check-config", str(cfg)), capture_output=True, text=True)
    assert out.returncode == 2 and "plaintext mqtt:// to 192.0.2.10" in out.stderr


def test_files_the_agent_writes_are_owner_only(tmp_path):
    run_agent(tmp_path, "mqtt://127.0.0.1:9", seconds=1.5)
    state = tmp_path / "state"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for p in state.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, p


@pytest.mark.broker
def test_the_wrong_scheme_for_a_port_is_logged_with_the_right_hint(broker_factory, pki, tmp_path):
    """mqtt:// to a TLS listener, and mqtts:// to a plaintext one: nothing was logged for the
    first (even at debug), and the second said only "wrong version number"."""
    tls = broker_factory(tls_listener(pki))
    plain_to_tls = run_agent(tmp_path / "a", f"mqtt://127.0.0.1:{tls.port}")
    assert delivered(plain_to_tls) == 0, plain_to_tls
    assert re.search(r"event=uplink_connect_failed .*hint=.*plaintext \(use mqtts://\)", plain_to_tls), (
        plain_to_tls
    )
    plain = broker_factory()
    tls_to_plain = run_agent(tmp_path / "b", f"mqtts://127.0.0.1:{plain.port}", f"  ca_file: {pki}/ca.pem")
    assert delivered(tls_to_plain) == 0, tls_to_plain
    assert re.search(
        r"event=uplink_connect_failed .*error='the broker (answered in plaintext|reset the connection during "
        r"the TLS handshake).*hint='127\.0\.0\.1:\d+ (has|may have) no TLS listener",
        tls_to_plain,
    ), tls_to_plain


@pytest.mark.broker
@pytest.mark.parametrize("client", [None, "other-client"])
def test_a_refused_client_certificate_is_logged_as_the_cause(broker_factory, pki, tmp_path, client):
    """require_certificate, and no client certificate or one another CA signed: with TLS 1.3
    the broker's no comes after the handshake, and the agent used to log only "closed before
    CONNACK" with a list of guesses."""
    b = broker_factory(tls_listener(pki, require_cert=True))
    extra = f"  ca_file: {pki}/ca.pem"
    if client:
        extra += f"\n  cert_file: {pki}/{client}.pem\n  key_file: {pki}/{client}.key"
    log = run_agent(tmp_path, f"mqtts://127.0.0.1:{b.port}", extra)
    assert delivered(log) == 0, log
    assert re.search(r"event=mqtt_tls_refused .*error='[^']*certificate.*hint='[^']*cert_file", log), log
    assert "firewall" not in log, log


def test_a_state_dir_others_may_write_is_refused_with_a_clear_error(tmp_path):
    """An existing state directory of mode 0777 stayed 0777 and held the queue: refused,
    through the CLI, with the path, the mode and the fix, and no traceback."""
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    cfg = tmp_path / "node.yaml"
    cfg.write_text(CONFIG.format(broker="mqtt://127.0.0.1:1", mqtt_extra=""))
    proc = subprocess.run(
        agent_cmd("run", "--simulate", "--config", str(cfg), "--state-dir", str(state)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode not in (0, 130) and "Traceback" not in proc.stderr, proc.stderr
    assert f"{state}: writable by its group and every user (mode 0777)" in proc.stderr, proc.stderr
    assert f"chmod go-w {state}" in proc.stderr, proc.stderr
    assert list(state.iterdir()) == [] and stat.S_IMODE(state.stat().st_mode) == 0o777
