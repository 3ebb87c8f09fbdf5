"""`edge-agent decode` prints the samples of a payload, checks its topic and refuses a bad checksum."""

from __future__ import annotations

import json
import subprocess
import sys

from wire_data import TWO_CHANNELS


def test_decode_cli_prints_samples_and_checks_topic(tmp_path):
    payload = bytes.fromhex(TWO_CHANNELS.read_text().strip())
    f = tmp_path / "msg.bin"
    f.write_bytes(payload)
    cmd = [sys.executable, "-m", "edge_agent.cli", "decode", str(f), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert rows[0] == {
        "node": "lamp-0042",
        "stream": "air",
        "epoch": "00000000",
        "seq": 7,
        "version": 1,
        "channel": "temperature",
        "unit": "°C",
        "t": 1767225600.0,
        "value": 21.5,
        "reconstruction": "every",
        "bound": 0.005,
    }
    assert len(rows) == 5 and rows[-1]["quality"] == 4
    ok = subprocess.run([*cmd, "--topic", "city/lamp-0042/data/air"], capture_output=True, text=True)
    assert ok.returncode == 0
    bad = subprocess.run([*cmd, "--topic", "city/lamp-0001/data/air"], capture_output=True, text=True)
    assert bad.returncode == 1 and "does not match" in bad.stderr
    f.write_bytes(payload[:-2])
    corrupt = subprocess.run(cmd, capture_output=True, text=True)
    assert corrupt.returncode == 1 and "checksum" in corrupt.stderr
