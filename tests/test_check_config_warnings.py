"""check-config warns about the files a configuration names that are not there (a CA, a
client certificate and key, a password file): valid still, since a card's configuration
is checked on a laptop before the card holds them, but said, not passed in silence."""

from __future__ import annotations

import json

from edge_agent.cli import main

CONFIG = """\
node: {{id: n1}}
mqtt:
  broker: "mqtts://broker.example.net"
  ca_file: {ca}
  cert_file: {d}/client.pem
  key_file: {d}/client.key
  username: n1
  password_file: {d}/pw
sensors:
  - {{type: bme680}}
"""


def test_missing_files_are_warnings_naming_the_key_and_the_file(tmp_path, capsys):
    (tmp_path / "client.pem").write_text("x")
    (tmp_path / "pw").mkdir()  # a directory where a file should be
    cfg = tmp_path / "node.yaml"
    cfg.write_text(CONFIG.format(ca=tmp_path / "ca.pem", d=tmp_path))
    assert main(["check-config", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert f"warning: mqtt.ca_file {tmp_path}/ca.pem does not exist here" in err
    assert f"warning: mqtt.key_file {tmp_path}/client.key does not exist here" in err
    assert f"warning: mqtt.password_file {tmp_path}/pw is not a file here" in err
    assert "cert_file" not in err  # it is there
    assert main(["check-config", "--json", str(cfg)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] and len(doc["warnings"]) == 3


def test_a_configuration_whose_files_are_all_there_has_no_warning(tmp_path, capsys):
    for name in ("ca.pem", "client.pem", "client.key", "pw"):
        (tmp_path / name).write_text("x")
    cfg = tmp_path / "node.yaml"
    cfg.write_text(CONFIG.format(ca=tmp_path / "ca.pem", d=tmp_path))
    assert main(["check-config", "--json", str(cfg)]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []
