"""`edge-agent compress-report` on CSV files."""

from __future__ import annotations

import json
import math
import random
import subprocess

import pytest
from helpers import agent_cmd


def write_csv(path, n=2000, header=True, seed=5):
    rnd = random.Random(seed)
    rows = ["t,value"] if header else []
    for i in range(n):
        rows.append(f"{1_767_225_600 + i},{20 + 3 * math.sin(i / 200) + rnd.gauss(0, 0.02):.4f}")
    path.write_text("\n".join(rows) + "\n")
    return path


def report(*args):
    out = subprocess.run(agent_cmd("compress-report", *args), capture_output=True, text=True)
    return out


@pytest.mark.parametrize("deviation", [None, 0.05, 0.5])
def test_report_holds_the_bound_and_counts_bytes(tmp_path, deviation):
    f = write_csv(tmp_path / "s.csv")
    args = [str(f), "--resolution", "0.01", "--json"] + (["--deviation", str(deviation)] if deviation else [])
    out = report(*args)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["samples"] == 2000
    assert r["max_abs_error"] <= r["bound"] + 1e-9
    assert r["compression_ratio"] == round(16 * 2000 / r["payload_bytes"], 2)
    assert r["bits_per_sample"] == round(8 * r["payload_bytes"] / 2000, 3)
    assert 0 < r["bits_per_value"] <= 8 * r["payload_bytes_undeflated"] / 2000
    assert r["payload_bytes"] <= r["payload_bytes_undeflated"]
    if deviation is None:
        assert r["points_kept"] == 2000 and r["max_abs_error"] <= 0.005 + 1e-9
    else:
        assert r["points_kept"] < 2000


def test_larger_deviation_keeps_fewer_points(tmp_path):
    f = write_csv(tmp_path / "s.csv")
    kept = [
        json.loads(report(str(f), "--resolution", "0.01", "--deviation", str(d), "--json").stdout)[
            "points_kept"
        ]
        for d in (0.02, 0.1, 0.5)
    ]
    assert kept[0] > kept[1] > kept[2]


def test_text_output_and_bad_rows(tmp_path):
    f = write_csv(tmp_path / "s.csv", n=50, header=False)
    out = report(str(f), "--resolution", "0.1")
    assert out.returncode == 0 and "compression ratio" in out.stdout and "lossless" in out.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("t,value\n1,2.5\n2,oops\n")
    out = report(str(bad), "--resolution", "0.1")
    assert out.returncode == 2 and "bad.csv:3: expected two numbers t,value" in out.stderr
    back = tmp_path / "back.csv"
    back.write_text("5,1\n4,1\n")
    out = report(str(back), "--resolution", "0.1")
    assert out.returncode == 2 and "back.csv:2: time 4 does not come after 5" in out.stderr


def test_the_error_bounded_mode_holds_the_bound_and_wins_where_noise_is_near_the_bound(tmp_path):
    f = write_csv(tmp_path / "s.csv")  # noise sigma 0.02

    def run(mode, deviation):
        return json.loads(
            report(
                str(f), "--resolution", "0.01", "--deviation", str(deviation), "--mode", mode, "--json"
            ).stdout
        )

    for deviation in (0.02, 0.1):
        door, binned = run("swing", deviation), run("bound", deviation)
        for r in (door, binned):
            assert r["max_abs_error"] <= r["bound"] + 1e-9 and r["bound"] == pytest.approx(deviation + 0.005)
        assert binned["points_kept"] == 2000 and binned["mode"] == "bound"
        if deviation == 0.02:  # the door keeps many points when noise is near the bound
            assert binned["payload_bytes"] < 0.7 * door["payload_bytes"]
        else:  # far above the noise, the door's lines win (measured: 267 B against 198 B)
            assert door["payload_bytes"] < binned["payload_bytes"]


def test_the_report_names_the_wire_version_and_predictor_it_chose(tmp_path):
    """Hourly readings of a daily cycle over ten days: predicted from the day before."""
    rnd = random.Random(8)
    profile = [12 + 6 * math.sin(2 * math.pi * h / 24) + rnd.uniform(-2, 2) for h in range(24)]
    f = tmp_path / "hourly.csv"
    f.write_text(
        "".join(
            f"{1_767_225_600 + 3600 * h},{profile[h % 24] + rnd.choice((-0.1, 0, 0.1)):.1f}\n"
            for h in range(240)
        )
    )
    r = json.loads(report(str(f), "--resolution", "0.1", "--json").stdout)
    assert (r["wire_version"], r["predictor"], r["period_ms"]) == (4, "seasonal", 3_600_000)
    assert "wire version 4, predictor seasonal" in report(str(f), "--resolution", "0.1").stdout
