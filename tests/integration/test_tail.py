"""`edge-agent tail` logs in the way a node does, through the one MQTT client set-up:
a username with a password file, TLS verified against a CA, a client certificate; a bad
credential is a clear error and an exit code, never a traceback."""

from __future__ import annotations

import json
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest
from helpers import BROKER_USER, agent_cmd, authenticated_broker, tls_listener
from paho.mqtt.enums import CallbackAPIVersion
from wire_data import V2_AIR

from edge_agent import wire
from edge_agent.node.mqtt import ClientSettings, client_for_url, connect

VECTOR = V2_AIR


def publish_retained(url: str, settings: ClientSettings) -> wire.Batch:
    """One real batch, retained on its data topic, so a tail that subscribes later gets it."""
    payload = bytes.fromhex(VECTOR.read_text().strip())
    batch = wire.decode(payload)
    client, broker = client_for_url(url, settings)
    connect(client, broker, settings)
    client.loop_start()
    try:
        info = client.publish(wire.data_topic("edge", batch.node, batch.stream), payload, qos=1, retain=True)
        info.wait_for_publish(timeout=10)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()
    return batch


def tail(url: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        agent_cmd("tail", "--broker", url, "--count", "1", "--timeout", "30", "--json", *flags),
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_got(out: subprocess.CompletedProcess, batch: wire.Batch) -> None:
    assert out.returncode == 0, out.stderr
    assert f'"node": "{batch.node}"' in out.stdout and f'"stream": "{batch.stream}"' in out.stdout
    assert "Traceback" not in out.stderr


@pytest.mark.broker
def test_tail_logs_in_with_a_password_file_and_a_wrong_one_is_refused(
    broker_factory, tmp_path, mqtt_password
):
    value, path = mqtt_password
    b = authenticated_broker(broker_factory, tmp_path, value)
    batch = publish_retained(b.url, ClientSettings("pub", username=BROKER_USER, password_file=path))
    assert_got(tail(b.url, "--username", BROKER_USER, "--password-file", path), batch)

    wrong = tmp_path / "wrong"
    wrong.write_text("not-" + value + "\n")
    out = tail(b.url, "--username", BROKER_USER, "--password-file", str(wrong))
    assert out.returncode == 1 and "refused the connection" in out.stderr, out.stderr
    assert value not in out.stderr + out.stdout and "Traceback" not in out.stderr
    out = tail(b.url)  # anonymous
    assert out.returncode == 1 and "refused the connection" in out.stderr, out.stderr


@pytest.mark.broker
def test_tail_over_mutual_tls_with_a_password(broker_factory, pki, tmp_path, mqtt_password):
    value, path = mqtt_password
    b = authenticated_broker(broker_factory, tmp_path, value, tls_listener(pki, require_cert=True))
    url = f"mqtts://127.0.0.1:{b.port}"
    creds = [
        "--ca-file",
        f"{pki}/ca.pem",
        "--cert-file",
        f"{pki}/client.pem",
        "--key-file",
        f"{pki}/client.key",
    ]
    batch = publish_retained(
        url,
        ClientSettings(
            "pub",
            ca_file=f"{pki}/ca.pem",
            cert_file=f"{pki}/client.pem",
            key_file=f"{pki}/client.key",
            username=BROKER_USER,
            password_file=path,
        ),
    )
    assert_got(tail(url, *creds, "--username", BROKER_USER, "--password-file", path), batch)

    out = tail(url, "--username", BROKER_USER, "--password-file", path)  # the system CAs: not the test CA
    assert out.returncode == 1 and "certificate verify failed" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.broker
def test_tail_over_tls_with_a_password(broker_factory, pki, tmp_path, mqtt_password):
    """TLS verified against the CA file, the login by password (no client certificate)."""
    value, path = mqtt_password
    b = authenticated_broker(broker_factory, tmp_path, value, tls_listener(pki))
    url = f"mqtts://127.0.0.1:{b.port}"
    ca = f"{pki}/ca.pem"
    batch = publish_retained(url, ClientSettings("pub", ca_file=ca, username=BROKER_USER, password_file=path))
    assert_got(tail(url, "--ca-file", ca, "--username", BROKER_USER, "--password-file", path), batch)
    out = tail(url, "--ca-file", ca)  # TLS alone is no login
    assert out.returncode == 1 and "refused the connection" in out.stderr, out.stderr
    out = tail(url, "--ca-file", f"{pki}/other-ca.pem", "--username", BROKER_USER, "--password-file", path)
    assert out.returncode == 1 and "certificate verify failed" in out.stderr, out.stderr
    assert value not in out.stderr + out.stdout and "Traceback" not in out.stderr


@pytest.mark.broker
def test_tail_over_mutual_tls_with_the_certificate_alone(broker_factory, pki, tmp_path):
    """The client certificate is the login (its name the username): no password at all."""
    b = broker_factory(tls_listener(pki, require_cert=True) + "use_identity_as_username true\n")
    b.stop()
    b.conf.write_text(b.conf.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    b.start()
    url = f"mqtts://127.0.0.1:{b.port}"
    ca, cert, key = f"{pki}/ca.pem", f"{pki}/client.pem", f"{pki}/client.key"
    batch = publish_retained(url, ClientSettings("pub", ca_file=ca, cert_file=cert, key_file=key))
    assert_got(tail(url, "--ca-file", ca, "--cert-file", cert, "--key-file", key), batch)
    out = tail(url, "--ca-file", ca)  # no certificate: the broker ends the session at once
    assert out.returncode == 1 and "closed the connection before accepting it" in out.stderr, out.stderr
    assert "0 of 1 messages" not in out.stderr  # said at once, not after the timeout
    assert "Traceback" not in out.stderr


def test_credentials_that_cannot_work_are_clear_errors(tmp_path):
    """No broker needed: each is refused before any connection, with what and where."""
    url = "mqtts://127.0.0.1:1"
    cases = [
        (["--cert-file", str(tmp_path / "c.pem")], 2, "cert_file and key_file"),
        (["--password-file", str(tmp_path / "pw")], 2, "needs a username"),
        (["--username", "u", "--password-file", str(tmp_path / "missing")], 1, "missing"),
        (["--ca-file", str(tmp_path / "no-ca.pem")], 1, "cannot set up the client"),
    ]
    for flags, code, said in cases:
        out = tail(url, *flags)
        assert (out.returncode, said in out.stderr) == (code, True), (flags, out.stderr)
        assert "Traceback" not in out.stderr


@pytest.mark.broker
def test_tail_deduplicates_by_epoch_and_reports_gaps_and_a_store_loss(broker, tmp_path):
    """Epoch A sends 0, 1, 1 (again), 4, 5; the store is lost and epoch B starts at 0 again:
    B's batches are new (the old key, without the epoch, called them duplicates)."""
    out, err = tmp_path / "out", tmp_path / "err"
    sent = [(0xA, 0), (0xA, 1), (0xA, 1), (0xA, 4), (0xA, 5), (0xB, 0), (0xB, 1)]
    tail = subprocess.Popen(
        agent_cmd(
            "tail",
            "--broker",
            broker.url,
            "--json",
            "--prefix",
            "d",
            "--count",
            str(len(sent)),
            "--timeout",
            "20",
        ),
        stdout=open(out, "wb"),
        stderr=open(err, "wb"),
    )
    deadline = time.monotonic() + 15
    while "event=subscribed" not in err.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    forged = wire.Batch(
        "n1", "air", 99, 1_000, (wire.ChannelData("t", "°C", 0.1, (1_000,), (0,)),), epoch=0xA
    )
    c.publish("d/n2/data/air", wire.encode(forged), qos=1).wait_for_publish(5)  # n1's name on n2's topic
    for i, (epoch, seq) in enumerate(sent):
        t0 = 1_000 + 60_000 * i
        ch = wire.ChannelData("t", "°C", 0.1, (t0,), (seq,), reconstruction="hold", bound=0.2)
        batch = wire.Batch("n1", "air", seq, t0, (ch,), epoch=epoch)
        c.publish("d/n1/data/air", wire.encode(batch), qos=1).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()
    assert tail.wait(timeout=30) == 0, err.read_text()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["epoch"], r["seq"]) for r in rows] == [
        ("0000000a", 0),
        ("0000000a", 1),
        ("0000000a", 4),
        ("0000000a", 5),
        ("0000000b", 0),  # after the store loss: new
        ("0000000b", 1),
    ]
    assert {(r["version"], r["reconstruction"], r["bound"]) for r in rows} == {(4, "hold", 0.25)}
    assert "duplicate n1/air epoch=0000000a seq=1 (not printed again)" in err.read_text()
    assert "'d/n2/data/air': refused: the payload says node n1 stream air" in err.read_text()
    summary = [json.loads(line)["summary"] for line in err.read_text().splitlines() if line.startswith("{")]
    assert summary == [
        {
            "node": "n1",
            "stream": "air",
            "received": 6,
            "duplicates": 1,
            "missing": 2,
            "epochs": [
                {
                    "epoch": "0000000a",
                    "first": 0,
                    "last": 5,
                    "received": 4,
                    "missing": 2,
                    "gaps": [[2, 3]],
                    "t0_ms": 1_000,
                    "clock_unsynced": False,
                },
                {
                    "epoch": "0000000b",
                    "first": 0,
                    "last": 1,
                    "received": 2,
                    "missing": 0,
                    "gaps": [],
                    "t0_ms": 301_000,
                    "clock_unsynced": False,
                },
            ],
            "store_losses": [
                {
                    "epoch_before": "0000000a",
                    "epoch_after": "0000000b",
                    "last_seq_before": 5,
                    "first_seq_after": 0,
                    "clock_unsynced": False,
                }
            ],
        }
    ]


HOSTILE = ("\x1b", "\x9b", "\u202e", "\x07")  # ESC, CSI, a bidi override, BEL


def _start_tail(url: str, out, err, *flags: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        agent_cmd("tail", "--broker", url, "--prefix", "d", "--timeout", "60", *flags),
        stdout=open(out, "wb"),
        stderr=open(err, "wb"),
    )
    deadline = time.monotonic() + 15  # a hang guard: the wait is for the event
    while "event=subscribed" not in err.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
        time.sleep(0.05)
    return proc


@pytest.mark.broker
@pytest.mark.parametrize("as_json", [False, True])
def test_tail_escapes_what_a_payload_or_topic_holds_and_flags_a_forged_node(
    broker, tmp_path, monkeypatch, as_json
):
    """Names holding escape sequences and newlines (a payload the encoder would refuse, made
    by skipping its checks), a unit with a bidi override, a topic holding
    them, and node n1's name on n2's topic: nothing hostile reaches the terminal raw, no
    line is forged, and the mismatch is said."""
    import edge_agent.wire.encoder as encoder

    out, err = tmp_path / "out", tmp_path / "err"
    tail_proc = _start_tail(broker.url, out, err, "--count", "2", *(["--json"] if as_json else []))
    ch = wire.ChannelData("t", "°C\u202e", 0.1, (1_000,), (5,))  # a unit may hold a bidi override
    fine = wire.encode(wire.Batch("n1", "air", 0, 1_000, (ch,), epoch=1))
    monkeypatch.setattr(encoder, "_check_header", lambda batch: None)
    evil = "n1\x1b[2J\x1b]0;owned\x07\nn1 air epoch=00000001 seq=9 FORGED"
    crafted = wire.encode(wire.Batch(evil, "air\r\nx", 1, 1_000, (ch,), epoch=1))
    monkeypatch.undo()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        for topic, payload in [
            ("d/n1/data/air", crafted),  # names the decoder refuses
            (
                "d/n1\u202e/data/air",
                fine,
            ),  # a topic holding one (Mosquitto drops a client whose topic holds a control)
            ("d/n2/data/air", fine),  # n1's payload on n2's topic
            ("d/n1/data/air", fine),  # the two genuine ones, which --count waits for
            ("d/n1/data/air", wire.encode(wire.Batch("n1", "air", 1, 2_000, (ch,), epoch=1))),
        ]:
            c.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()
    assert tail_proc.wait(timeout=60) == 0, err.read_text()
    stdout, stderr = out.read_text(), err.read_text()
    for ch_ in HOSTILE:
        assert ch_ not in stdout and ch_ not in stderr, (ch_, stdout, stderr)
    lines = stdout.splitlines()
    assert len(lines) == 2 and "FORGED" not in stdout, stdout
    if as_json:
        rows = [json.loads(line) for line in lines]
        assert [(r["node"], r["seq"], r["unit"]) for r in rows] == [
            (n, s, "°C\u202e") for n, s in (("n1", 0), ("n1", 1))
        ]
    else:
        assert all(line.startswith("n1 air epoch=00000001 seq=") for line in lines), stdout
        assert "°C\\u202e" in stdout, stdout
    assert "node id 'n1\\x1b[2J\\x1b]0;owned\\x07\\nn1 air" in stderr, stderr  # said, escaped
    assert "'d/n1\\u202e/data/air': refused" in stderr, stderr
    assert "'d/n2/data/air': refused: the payload says node n1 stream air" in stderr, stderr
    assert "Traceback" not in stderr


@pytest.mark.broker
def test_tail_stops_promptly_on_sigint_under_a_flood(broker, tmp_path):
    """A publisher that never stops: after SIGINT, tail exits (0 or 130, no traceback)
    before the publisher has sent FLOOD_BOUND more batches."""
    import os
    import signal

    flood_bound = 5_000
    out, err = tmp_path / "out", tmp_path / "err"
    tail_proc = _start_tail(broker.url, out, err)
    ch = wire.ChannelData("t", "°C", 0.1, tuple(range(1_000, 11_000, 100)), tuple(range(100)))
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    sent, after_signal, signalled = 0, 0, False
    try:
        while tail_proc.poll() is None:
            payload = wire.encode(wire.Batch("n1", "air", sent, 1_000, (ch,), epoch=1))
            c.publish("d/n1/data/air", payload, qos=1).wait_for_publish(5)
            sent += 1
            if signalled:
                after_signal += 1
                assert after_signal < flood_bound, f"tail still running {after_signal} batches after SIGINT"
            elif sent >= 200 and out.stat().st_size > 0:  # it is printing the flood
                os.kill(tail_proc.pid, signal.SIGINT)
                signalled = True
    finally:
        c.disconnect()
        c.loop_stop()
        if tail_proc.poll() is None:
            tail_proc.kill()
    assert signalled and tail_proc.returncode in (0, 130), (tail_proc.returncode, err.read_text()[-2000:])
    assert "Traceback" not in err.read_text()
