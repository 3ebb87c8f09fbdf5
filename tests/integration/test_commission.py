"""`edge-agent commission --simulate` against a Mosquitto the test starts (TLS with a test CA):
passes when everything is there, and fails with the right line when it is not."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import pytest
from helpers import agent_cmd

CONFIG = textwrap.dedent("""\
    node:
      id: comm-01
    state_dir: {state}
    mqtt:
      broker: {broker}
    {mqtt_extra}
    sensors:
      - name: air
        type: bme680
        heater: {{duration: 30ms}}
      - name: power
        type: ina226
        address: 0x40
        {absent}
""")


def sysroot(tmp_path, synced=True):
    root = tmp_path / "sysroot"
    flag = root / "run" / "systemd" / "timesync"
    flag.mkdir(parents=True, exist_ok=True)
    if synced:
        (flag / "synchronized").write_text("")
    return root


def commission(tmp_path, broker, *, mqtt_extra="", absent="", synced=True, as_json=True):
    cfg = tmp_path / "node.yaml"
    cfg.write_text(
        CONFIG.format(
            state=tmp_path / "state",
            broker=broker,
            absent=absent,
            mqtt_extra=textwrap.indent(mqtt_extra, "  ").strip() and textwrap.indent(mqtt_extra, "  "),
        )
    )
    env = dict(os.environ, EDGE_AGENT_SYSROOT=str(sysroot(tmp_path, synced)))
    args = ["commission", "--simulate", "--config", str(cfg), "--timeout", "5"] + (
        ["--json"] if as_json else []
    )
    proc = subprocess.run(agent_cmd(*args), capture_output=True, text=True, env=env, timeout=60)
    return proc


def checks(proc):
    report = json.loads(proc.stdout)
    return report, {c["name"].split(" (")[0].split(" mqtt")[0]: c for c in report["checks"]}


@pytest.mark.broker
def test_commission_passes_with_tls_verified_and_a_round_trip(broker_factory, pki, tmp_path):
    b = broker_factory(f"cafile {pki}/ca.pem\ncertfile {pki}/server.pem\nkeyfile {pki}/server.key\n")
    proc = commission(tmp_path, f"mqtts://127.0.0.1:{b.port}", mqtt_extra=f"ca_file: {pki}/ca.pem")
    report, by = checks(proc)
    assert proc.returncode == 0 and report["passed"], proc.stdout + proc.stderr
    assert by["sensor air"]["ok"] and "temperature=" in by["sensor air"]["detail"]
    assert by["sensor power"]["ok"] and "current=" in by["sensor power"]["detail"]
    assert by["store"]["ok"] and "MiB free" in by["store"]["detail"]
    assert by["clock"]["ok"]
    broker = next(c for c in report["checks"] if c["name"].startswith("broker"))
    assert broker["ok"] and "TLS verified" in broker["detail"]
    assert by["round trip"]["ok"] and " ms" in by["round trip"]["detail"]
    text = commission(
        tmp_path, f"mqtts://127.0.0.1:{b.port}", mqtt_extra=f"ca_file: {pki}/ca.pem", as_json=False
    )
    assert text.returncode == 0 and text.stdout.rstrip().endswith("COMMISSIONING PASSED"), text.stdout


@pytest.mark.broker
def test_commission_fails_on_the_broker_line_when_the_broker_is_down(broker_factory, tmp_path):
    b = broker_factory()
    url = b.url
    b.stop()
    proc = commission(tmp_path, url, as_json=False)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert any(ln.startswith(f"FAIL  broker {url}: connection refused") for ln in lines), proc.stdout
    assert any(ln.startswith("PASS  sensor air") for ln in lines)
    assert lines[-1].startswith("COMMISSIONING FAILED")


@pytest.mark.broker
def test_commission_fails_on_a_missing_sensor_and_an_unsynced_clock(broker_factory, tmp_path):
    b = broker_factory()
    proc = commission(tmp_path, b.url, absent="sim: {absent: true}", synced=False)
    report, by = checks(proc)
    assert proc.returncode == 1 and not report["passed"]
    assert not by["sensor power"]["ok"] and "not found" in by["sensor power"]["detail"]
    assert "edge-agent probe" in by["sensor power"]["hint"]
    assert by["sensor air"]["ok"] and by["round trip"]["ok"]
    assert not by["clock"]["ok"] and "NTP" in by["clock"]["hint"]


@pytest.mark.broker
def test_commission_refuses_a_broker_whose_certificate_does_not_verify(broker_factory, pki, tmp_path):
    b = broker_factory(f"cafile {pki}/ca.pem\ncertfile {pki}/server.pem\nkeyfile {pki}/server.key\n")
    proc = commission(tmp_path, f"mqtts://127.0.0.1:{b.port}", mqtt_extra=f"ca_file: {pki}/other-ca.pem")
    report, _ = checks(proc)
    broker = next(c for c in report["checks"] if c["name"].startswith("broker"))
    assert proc.returncode == 1 and not broker["ok"] and "does not verify" in broker["detail"], proc.stdout


def test_the_missing_sensor_rehearsal_key_is_validated(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        CONFIG.format(
            state=tmp_path, broker="mqtt://127.0.0.1:1", mqtt_extra="", absent="sim: {absent: maybe}"
        )
    )
    proc = subprocess.run(agent_cmd("check-config", str(cfg)), capture_output=True, text=True)
    assert proc.returncode == 2 and "sensors[1].sim.absent" in proc.stderr


@pytest.mark.parametrize("absent", [False, True])
def test_a_pulse_meter_passes_only_once_a_pulse_came(tmp_path, absent):
    from edge_agent.config import load_config
    from edge_agent.field.commission import check_sensors
    from edge_agent.node.hardware import SimulatedHardware

    cfg_file = tmp_path / "n.yaml"
    cfg_file.write_text(
        textwrap.dedent(f"""\
        node: {{id: s0-node}}
        mqtt: {{broker: "mqtt://127.0.0.1:1"}}
        sensors:
          - {{name: meter, type: s0, pin: 5, sim: {{power: 36000, absent: {str(absent).lower()}}}}}
    """)
    )
    cfg = load_config(cfg_file)
    with SimulatedHardware(cfg) as hw:
        (check,) = check_sensors(cfg, hw.make, wait=1.5)
    assert check.ok is not absent, check
    assert ("no pulse" in check.detail) is absent and ("S0 wiring" in check.hint) is absent


def broker_check(proc):
    report, _ = checks(proc)
    return report, next(c for c in report["checks"] if c["name"].startswith("broker"))


@pytest.mark.broker
@pytest.mark.parametrize("client", [None, "other-client"])
def test_commission_names_a_refused_client_certificate_not_a_firewall(broker_factory, pki, tmp_path, client):
    """require_certificate: with no client certificate, or one another CA signed, the broker
    line says the certificate was refused and what to check, never a firewall."""
    b = broker_factory(
        f"cafile {pki}/ca.pem\ncertfile {pki}/server.pem\nkeyfile {pki}/server.key\n"
        "require_certificate true\n"
    )
    extra = f"ca_file: {pki}/ca.pem"
    if client:
        extra += f"\ncert_file: {pki}/{client}.pem\nkey_file: {pki}/{client}.key"
    proc = commission(tmp_path, f"mqtts://127.0.0.1:{b.port}", mqtt_extra=extra)
    report, broker = broker_check(proc)
    assert proc.returncode == 1 and not report["passed"] and not broker["ok"], proc.stdout
    text = (broker["detail"] + " " + broker["hint"]).lower()
    assert "certificate" in broker["detail"] and "cert_file" in broker["hint"], broker
    assert "firewall" not in text, broker


@pytest.mark.broker
def test_commission_says_plaintext_was_spoken_to_a_tls_port(broker_factory, pki, tmp_path):
    b = broker_factory(f"cafile {pki}/ca.pem\ncertfile {pki}/server.pem\nkeyfile {pki}/server.key\n")
    proc = commission(tmp_path, f"mqtt://127.0.0.1:{b.port}")
    _, broker = broker_check(proc)
    assert proc.returncode == 1 and not broker["ok"], proc.stdout
    assert "mqtts://" in broker["hint"] and "plaintext" in broker["hint"], broker
    assert "firewall" not in (broker["detail"] + broker["hint"]).lower(), broker
