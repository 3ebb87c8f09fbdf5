"""`edge-agent decode` reads what a backbone engineer has at hand: a payload file, standard
input, the hex lines that `mosquitto_sub -F %x` prints (several payloads, one per line), and
prints every flag a batch carries. Bad input is a clear error, never a traceback."""

from __future__ import annotations

import json
import subprocess

from helpers import agent_cmd
from wire_data import TWO_CHANNELS

from edge_agent import wire

SCHEDULE = TWO_CHANNELS.parent / "v2-air-schedule.hex"


def decode(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(agent_cmd("decode", *args), input=stdin, capture_output=True, timeout=60)


def test_standard_input_raw_and_hex_with_one_payload_per_line():
    raw = bytes.fromhex(TWO_CHANNELS.read_text().strip())
    from_file = decode(str(TWO_CHANNELS), "--json")  # the vector's own .hex file
    assert from_file.returncode == 0, from_file.stderr
    rows = [json.loads(line) for line in from_file.stdout.splitlines()]
    assert len(rows) == 5 and rows[0]["seq"] == 7

    out = decode("-", "--json", stdin=raw)
    assert out.returncode == 0 and out.stdout == from_file.stdout

    two = TWO_CHANNELS.read_bytes() + b"\n\n" + SCHEDULE.read_bytes().upper()  # as mosquitto_sub -F %x
    out = decode("-", "--json", stdin=two)
    assert out.returncode == 0, out.stderr
    both = [json.loads(line) for line in out.stdout.splitlines()]
    assert both[: len(rows)] == rows and len(both) == len(rows) + len(
        list(wire.decode(bytes.fromhex(SCHEDULE.read_text().strip())).rows())
    )


def test_every_flag_a_batch_carries_is_printed(tmp_path):
    ch = wire.ChannelData(
        "temperature", "°C", 0.01, (0, 1000, 2000), (2150, 2151, 2149), ((1, wire.QUALITY_STUCK),)
    )
    unsynced = wire.encode(
        wire.Batch("n-1", "air", 3, 1_000, (ch,), flags=wire.FLAG_CLOCK_UNSYNCED, period_ms=1000)
    )
    f = tmp_path / "b.bin"
    f.write_bytes(wire.mark_historical(unsynced))
    out = decode(str(f), "--json")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r.get("quality") for r in rows] == [None, wire.QUALITY_STUCK, None]
    assert all(r["clock_unsynced"] is True and r["historical"] is True for r in rows)
    text = decode(str(f)).stdout.decode().splitlines()
    assert all(line.endswith("historical clock_unsynced") for line in text)
    assert "quality=0x02" in text[1] and "quality" not in text[0]
    f.write_bytes(wire.encode(wire.Batch("n-1", "air", 3, 1_000, (ch,), period_ms=1000)))
    plain = [json.loads(line) for line in decode(str(f), "--json").stdout.splitlines()]
    assert not any("clock_unsynced" in r or "historical" in r for r in plain)


def test_bad_input_is_named_and_the_good_payloads_beside_it_still_print():
    good = TWO_CHANNELS.read_bytes().strip()
    cases = [
        (b"abc\n", b"stdin:1: an odd number of hex digits"),
        (b"", b"too short to be a batch"),
        (b"\xff\xfe garbage", b"stdin: bad magic"),
        (good + b"\n" + good[:-2] + b"\n", b"stdin:2: "),  # the second payload is cut: its checksum
    ]
    for data, said in cases:
        out = decode("-", stdin=data)
        assert out.returncode == 1 and said in out.stderr, (data[:20], out.stderr)
        assert b"Traceback" not in out.stderr
    assert decode("-", stdin=cases[-1][0]).stdout.count(b"\n") == 5  # the first one printed
    out = decode("/nonexistent/payload")
    assert out.returncode == 1 and b"No such file" in out.stderr


def test_a_reader_that_goes_away_ends_it_quietly():
    many = (TWO_CHANNELS.read_text().strip() + "\n") * 2000
    proc = subprocess.Popen(
        agent_cmd("decode", "-"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdin and proc.stdout and proc.stderr
    proc.stdin.write(many.encode())
    proc.stdin.close()
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    assert proc.wait(timeout=60) == 141
    assert b"Traceback" not in proc.stderr.read()
