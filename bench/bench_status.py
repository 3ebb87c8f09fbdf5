"""The status page's costs, measured side by side in one run (issue 17's figures):

- the page's size in bytes, and /metrics' and /status.json's;
- its time to first contentful paint in headless chromium (the browser's own
  ``performance.getEntriesByType('paint')``, read over the DevTools protocol on a pipe),
  the median of several loads, with the node on this machine;
- the agent's resident memory with the listener on and off: two `edge-agent run --simulate`
  processes on the same configuration, their VmRSS after the same number of seals, and
  again after N requests to the one that serves.

    .venv/bin/python bench/bench_status.py [--loads 9] [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CONFIG = """\
node: {{id: bench-node}}
flush_interval: 1s
http: {{listen: "{listen}"}}
mqtt: {{broker: "mqtt://127.0.0.1:9"}}
sensors:
  - {{name: air, type: bme680, interval: 1s}}
  - {{name: particles, type: pmsa003i, interval: 1s}}
  - {{name: co2, type: scd4x, interval: 5s}}
  - {{name: mains, type: s0, pin: 5, pulses_per_kwh: 1000, interval: 1s}}
  - {{name: dc, type: ina226, address: 0x40, shunt_ohms: 0.01, max_current: 8, interval: 1s}}
"""


def start(work: Path, name: str, listen: str) -> tuple[subprocess.Popen, Path]:
    cfg = work / f"{name}.yaml"
    cfg.write_text(CONFIG.format(listen=listen))
    log = work / f"{name}.err"
    cmd = [sys.executable, "-m", "edge_agent.cli", "run", "--simulate", "--config", str(cfg)]
    proc = subprocess.Popen([*cmd, "--state-dir", str(work / name)], stderr=open(log, "wb"))
    return proc, log


def wait_log(proc: subprocess.Popen, log: Path, pattern: str, count: int = 1) -> str:
    while (text := log.read_text()).count(pattern) < count:
        if proc.poll() is not None:
            raise SystemExit(f"the agent ended:\n{text}")
        time.sleep(0.05)
    return text


def rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1))


class Browser:
    """Headless chromium driven over --remote-debugging-pipe (fd 3 in, fd 4 out)."""

    def __init__(self, profile: str) -> None:
        self.to_r, self.to_w = os.pipe()
        self.from_r, self.from_w = os.pipe()
        exe = shutil.which("chromium") or "chromium"
        args = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-pipe",
        ]
        args += [f"--user-data-dir={profile}", "about:blank"]

        def fds() -> None:
            os.dup2(self.to_r, 3)
            os.dup2(self.from_w, 4)

        self.proc = subprocess.Popen(
            args, pass_fds=(3, 4, self.to_r, self.from_w), preexec_fn=fds, stderr=subprocess.DEVNULL
        )
        os.close(self.to_r)
        os.close(self.from_w)
        self.buf = b""
        self.next_id = 0
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)[
            "sessionId"
        ]

    def _read(self) -> dict:
        while b"\0" not in self.buf:
            chunk = os.read(self.from_r, 65536)
            if not chunk:
                raise SystemExit("chromium closed its pipe")
            self.buf += chunk
        msg, _, self.buf = self.buf.partition(b"\0")
        return json.loads(msg)

    def call(self, method: str, session: str | None = None, **params: object) -> dict:
        self.next_id += 1
        msg: dict = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.to_w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise SystemExit(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def first_paint_ms(self, url: str) -> float:
        s = self.session
        self.call("Page.enable", s)
        self.call("Page.navigate", s, url=url)
        while True:  # the load event of this navigation
            ev = self._read()
            if ev.get("method") == "Page.loadEventFired":
                break
        for _ in range(100):
            r = self.call(
                "Runtime.evaluate",
                s,
                expression="JSON.stringify(performance.getEntriesByType('paint').map(e => [e.name, e.startTime]))",
                returnByValue=True,
            )
            paints = dict(json.loads(r["result"]["value"]))
            if "first-contentful-paint" in paints:
                return paints["first-contentful-paint"]
            time.sleep(0.02)
        raise SystemExit("no first contentful paint")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loads", type=int, default=9, help="page loads timed (default 9)")
    ap.add_argument("--requests", type=int, default=200, help="requests before the second RSS (default 200)")
    ap.add_argument("--seals", type=int, default=20, help="seals before the RSS is read (default 20)")
    a = ap.parse_args()
    if a.loads < 1 or a.requests < 0 or a.seals < 1:
        raise SystemExit("--loads and --seals must be at least 1, --requests at least 0")
    work = Path(tempfile.mkdtemp(prefix="bench-status-"))
    on, on_log = start(work, "on", "127.0.0.1:0")
    off, off_log = start(work, "off", "")
    try:
        text = wait_log(on, on_log, "event=batch_sealed stream=air", a.seals)
        wait_log(off, off_log, "event=batch_sealed stream=air", a.seals)
        rss_on, rss_off = rss_kib(on.pid), rss_kib(off.pid)
        port = re.search(r"event=http_listening listen=127\.0\.0\.1:(\d+)", text).group(1)
        base = f"http://127.0.0.1:{port}"
        sizes = {
            p: len(urllib.request.urlopen(base + p, timeout=30).read())
            for p in ("/", "/metrics", "/status.json")
        }
        for i in range(a.requests):
            urllib.request.urlopen(base + ("/", "/metrics", "/status.json")[i % 3], timeout=30).read()
        rss_on_after = rss_kib(on.pid)
        browser = Browser(str(work / "profile"))
        try:
            paints = [browser.first_paint_ms(f"{base}/?load={i}") for i in range(a.loads)]
        finally:
            browser.close()
    finally:
        for p in (on, off):
            p.terminate()
            p.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    print(f"page {sizes['/']} B, /metrics {sizes['/metrics']} B, /status.json {sizes['/status.json']} B")
    print(
        f"first contentful paint in headless chromium: median {statistics.median(paints):.1f} ms "
        f"(min {min(paints):.1f}, max {max(paints):.1f}, {a.loads} loads)"
    )
    print(
        f"RSS after {a.seals} seals: listener on {rss_on} KiB, off {rss_off} KiB: "
        f"{rss_on - rss_off:+d} KiB ({(rss_on - rss_off) / rss_off:+.1%}); "
        f"after {a.requests} requests more: {rss_on_after} KiB ({rss_on_after - rss_off:+d} KiB)"
    )


if __name__ == "__main__":
    main()
