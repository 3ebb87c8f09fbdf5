"""The status page as a technician sees it: Debian's chromium, headless, opens it on an
agent running in this process on simulated sensors. The values the browser rendered are
the node's own; a sensor unplugged in its simulator shows as stale; an action without the
token is refused; a screenshot is taken for the record (docs/status-page.png is one)."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import threading
from html.parser import HTMLParser

import pytest
from helpers import missing

from edge_agent.config import load_config
from edge_agent.node.agent import Agent

CONFIG = """\
node: {{id: ladder-node}}
flush_interval: 1s
state_dir: {state}
http: {{listen: "127.0.0.1:0", token_file: "{token}"}}
mqtt: {{broker: "mqtt://127.0.0.1:9"}}
sensors:
  # a slow schedule, so the page and the node's own values are of the same reading
  - {{name: air, type: bme680, interval: 5s, heater: {{duration: 30ms}}}}
  - {{name: particles, type: pmsa003i, interval: 5s}}
"""


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        missing("chromium is not installed (Debian's chromium; `make test` installs it as root)")
    assert path is not None
    return path


def browse(url: str, *extra: str) -> str:
    """What the headless browser rendered (its DOM after the load), or its screenshot's run."""
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    args += ["--disable-background-networking", "--user-data-dir=" + os.environ["BROWSER_PROFILE"]]
    proc = subprocess.run([*args, *extra, url], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


class Rows(HTMLParser):
    """The rendered table#sensors: each row's cells' text, and whether the row is marked stale."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[list[str], bool]] = []
        self.verdict = ""
        self._in_table = self._in_verdict = False
        self._cells: list[str] | None = None
        self._stale = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._in_table = a.get("id") == "sensors"
        elif tag == "tr" and self._in_table:
            self._cells, self._stale = [], "stale" in (a.get("class") or "")
        elif tag == "td" and self._cells is not None:
            self._cells.append("")
        elif tag == "p" and a.get("id") == "verdict":
            self._in_verdict = True

    def handle_endtag(self, tag):
        if tag == "tr" and self._cells:
            self.rows.append((self._cells, self._stale))
            self._cells = None
        elif tag == "table":
            self._in_table = False
        elif tag == "p":
            self._in_verdict = False

    def handle_data(self, data):
        if self._cells:
            self._cells[-1] += data
        if self._in_verdict:
            self.verdict += data


def rendered(url: str) -> Rows:
    r = Rows()
    r.feed(browse(url, "--dump-dom"))
    return r


@pytest.fixture
def profile(tmp_path, monkeypatch):
    monkeypatch.setenv("BROWSER_PROFILE", str(tmp_path / "profile"))


def test_a_technician_opens_the_page_in_a_browser(tmp_path, profile):
    chromium()
    token = tmp_path / "token"
    token.write_text("ladder-token-0123456789\n")
    path = tmp_path / "node.yaml"
    path.write_text(CONFIG.format(state=tmp_path / "state", token=token))
    agent = Agent(load_config(path), simulate=True, config_path=str(path))
    assert agent.http is not None
    url = f"http://127.0.0.1:{agent.http.port}/"
    seen: dict = {}

    def body() -> None:
        try:
            for _ in range(1200):  # every channel read once (counted by the snapshots taken)
                snap = agent.snapshots.latest
                if snap is not None and all(v["channels"] for v in snap.values.values()):
                    break
                agent.stop_event.wait(0.05)
            seen["page"] = rendered(url)
            seen["own"] = {
                (slot.cfg.name, ch): pipe.last
                for slot in agent.sampler.slots
                for ch, pipe in slot.channels.items()
            }
            browse(url, "--screenshot=" + str(tmp_path / "page.png"), "--window-size=900,1100")
            agent.hardware.sims["air"].unplug()
            for _ in range(1200):  # until the sampler marks it failing (counted missed slots)
                if (
                    agent.sampler.slots[0].state != "up"
                    and agent.snapshots.latest.values["air"]["state"] != "up"
                ):
                    break
                agent.stop_event.wait(0.05)
            seen["unplugged"] = rendered(url)
            conn = http.client.HTTPConnection("127.0.0.1", agent.http.port, timeout=60)
            conn.request("POST", "/actions/reload")  # as the page's button does, before the browser asks
            seen["post"] = conn.getresponse().status
            conn.close()
        finally:
            agent.stop_event.set()

    t = threading.Thread(target=body)
    t.start()
    agent.run()
    t.join()
    page: Rows = seen["page"]
    shown = {(cells[0], cells[2]): cells[3] for cells, _ in page.rows}
    for (sensor, channel), last in seen["own"].items():
        assert last is not None, (sensor, channel)
        _, value, _ = last
        unit = {c.name: c.unit for c in agent.cfg.sensor(sensor).channels}[channel]
        assert shown[(sensor, channel)] == f"{value:g} {unit}", (sensor, channel)
    assert not any(stale for _, stale in page.rows)
    assert (tmp_path / "page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    after: Rows = seen["unplugged"]
    air = [(cells, stale) for cells, stale in after.rows if cells[0] == "air"]
    assert air and all(stale and "(stale)" in cells[4] for cells, stale in air)
    assert not any(stale for cells, stale in after.rows if cells[0] == "particles")
    assert "sensor air is" in after.verdict
    assert seen["post"] == 401 and agent.reloads == 0  # an action without the token
