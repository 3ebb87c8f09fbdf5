"""The node's status page, /metrics and /status.json (node/status_*.py), against an agent
running in this process on simulated sensors: what they show is the node's own state, a
sensor unplugged in its simulator shows as stale and failing, every number of the health
message has a Prometheus series, and nothing a client sends stops the listener."""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.config import load_config, parse_listen
from edge_agent.errors import ConfigError
from edge_agent.node.agent import Agent
from edge_agent.node.status_render import leaves, metrics, page, unmapped

CONFIG = """\
node: {{id: page-node}}
flush_interval: 200ms
state_dir: {state}
http: {{listen: "127.0.0.1:0"}}
mqtt: {{broker: "mqtt://127.0.0.1:9"}}
sensors:
  - {{name: air, type: bme680, interval: 100ms, heater: {{duration: 30ms}}}}
  - {{name: mains, type: s0, pin: 5, pulses_per_kwh: 10000, interval: 100ms, sim: {{power: 7200}}}}
"""


@pytest.mark.parametrize(
    ("text", "want"),
    [("127.0.0.1:9180", ("127.0.0.1", 9180)), ("[::1]:80", ("::1", 80)), ("0.0.0.0:0", ("0.0.0.0", 0))],
)
def test_listen_addresses(text, want):
    assert parse_listen(text) == want


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("localhost:9180", "not a name"),
        ("127.0.0.1", "host:port"),
        ("127.0.0.1:65536", "0 (any free one) to 65535"),
        ("::1:9180", "IPv6 address in brackets"),
        ("[127.0.0.1]:80", "IPv6 address in brackets"),
        ("127.0.0.1:-1", "host:port"),
        ("127.0.0.1:9180\n", "host:port"),
    ],
)
def test_a_listen_that_is_no_address_is_refused_naming_the_key(tmp_path, text, says):
    path = tmp_path / "n.yaml"
    path.write_text(CONFIG.format(state=tmp_path / "s").replace('"127.0.0.1:0"', json.dumps(text)))
    with pytest.raises(ConfigError, match=r"http\.listen") as exc:
        load_config(path)
    assert says in str(exc.value)


def test_the_default_listens_on_loopback_and_an_empty_listen_turns_it_off(tmp_path):
    assert load_config().http.listen == "127.0.0.1:9180"
    path = tmp_path / "n.yaml"
    path.write_text(CONFIG.format(state=tmp_path / "s").replace('"127.0.0.1:0"', '""'))
    assert not load_config(path).http.enabled


class Running:
    """An agent on the main thread (its signals need it) while the test's body runs in a
    thread of its own, which ends the agent by setting its stop event."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        assert agent.http is not None
        self.port = agent.http.port

    def get(self, path: str, method: str = "GET") -> tuple[int, str, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path)
            r = conn.getresponse()
            return r.status, r.getheader("Content-Type") or "", r.read().decode()
        finally:
            conn.close()

    def facts_when(self, ok) -> dict:
        """/status.json, asked again until ``ok(facts)`` (by count of asks, not by time)."""
        for _ in range(600):
            status, _, body = self.get("/status.json")
            if status == 200 and ok(facts := json.loads(body)):
                return facts
            self.agent.stop_event.wait(0.05)
        raise AssertionError(f"never: {body}")


def run_with(tmp_path, body) -> None:
    path = tmp_path / "node.yaml"
    path.write_text(CONFIG.format(state=tmp_path / "state"))
    agent = Agent(load_config(path), simulate=True)
    errors: list[BaseException] = []

    def test_body() -> None:
        try:
            body(Running(agent))
        except BaseException as exc:  # noqa: BLE001 (raised again on the main thread)
            errors.append(exc)
        finally:
            agent.stop_event.set()

    t = threading.Thread(target=test_body)
    t.start()
    agent.run()
    t.join()
    if errors:
        raise errors[0]


def test_the_page_metrics_and_json_show_the_nodes_own_state(tmp_path):
    def body(node: Running) -> None:
        facts = node.facts_when(lambda f: f["sensors"]["air"]["samples"] >= 5 and f["store"]["batches"])
        agent = node.agent
        # the sensors' values are what the sampler read last, with their units
        last = agent.sampler.slots[0].channels["temperature"].last
        assert last is not None
        temp = facts["values"]["air"]["channels"]["temperature"]
        assert temp["unit"] == "°C" and 15.0 < temp["value"] < 30.0 and not temp["stale"]
        assert facts["values"]["mains"]["channels"]["energy"]["unit"] == "Wh"
        # the link is down (nothing listens on port 9) and the sampler seals: a problem
        assert facts["uplink"]["state"] == "disconnected" and not facts["ok"]
        assert any("queue growing with the link down" in p for p in facts["problems"])
        assert facts["node"] == "page-node" and facts["store"]["epoch"] == f"{agent.store.epoch:08x}"

        status, ctype, text = node.get("/metrics")
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
        }
        assert families["edge_agent_sensor_samples"].type == "counter"
        assert samples[("edge_agent_sensor_samples_total", (("sensor", "air"),))] >= 5
        assert samples[("edge_agent_uplink_connected", ())] == 0
        assert samples[("edge_agent_queue_batches", ())] >= 1
        value = samples[
            ("edge_agent_channel_value", (("channel", "temperature"), ("sensor", "air"), ("unit", "°C")))
        ]
        assert 15.0 < value < 30.0
        info = next(s for s in families["edge_agent_info"].samples)
        assert info.labels["node"] == "page-node" and info.labels["epoch"] == facts["store"]["epoch"]

        status, ctype, html = node.get("/")
        assert status == 200 and ctype.startswith("text/html")
        assert "page-node" in html and "temperature" in html and "°C" in html
        assert "<script" not in html and "http://" not in html.replace("mqtt://", "")  # nothing fetched

        assert node.get("/nothing")[0] == 404
        assert node.get("/", method="POST")[0] == 404  # only /actions/NAME takes a POST

    run_with(tmp_path, body)


def test_an_unplugged_sensor_shows_as_stale_and_failing(tmp_path):
    def body(node: Running) -> None:
        node.facts_when(lambda f: f["values"]["air"]["channels"])
        node.agent.hardware.sims["air"].unplug()
        facts = node.facts_when(lambda f: f["values"]["air"]["state"] != "up")
        assert all(c["stale"] for c in facts["values"]["air"]["channels"].values())
        assert not any(c["stale"] for c in facts["values"]["mains"]["channels"].values())
        assert any(p.startswith("sensor air is") for p in facts["problems"])
        _, _, html = node.get("/")
        assert "(stale)" in html and 'class="stale"' in html

    run_with(tmp_path, body)


def test_a_client_that_sends_nothing_does_not_keep_the_page_from_others(tmp_path):
    """One request at a time: a connection that never sends its request line holds the
    thread for the handler's timeout, then the next client is served."""

    def body(node: Running) -> None:
        node.facts_when(lambda f: True)
        mute = socket.create_connection(("127.0.0.1", node.port))
        half = socket.create_connection(("127.0.0.1", node.port))
        half.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # the headers never end
        try:
            assert node.get("/status.json")[0] == 200
        finally:
            mute.close()
            half.close()
        garbage = socket.create_connection(("127.0.0.1", node.port))
        garbage.sendall(b"\x16\x03\x01\x02\x00" + bytes(300) + b"\r\n\r\n")  # a TLS hello
        assert garbage.recv(100).startswith(b"HTTP/1.")  # an answer (400), not a dead listener
        garbage.close()
        assert node.get("/status.json")[0] == 200

    run_with(tmp_path, body)


def _rich_facts(tmp_path) -> dict:
    """Facts with every optional part filled: losses, a recovery, a WAL loss, errors."""
    facts: dict = {}

    def body(node: Running) -> None:
        facts.update(node.facts_when(lambda f: f["sensors"]["air"]["samples"] >= 2))

    run_with(tmp_path, body)
    facts["store"]["losses"] = {"air": {"dropped": 3, "unstored": 1}}
    facts["store"]["unstored_since_start"] = {"air": 1}
    facts["store"]["recovery"] = {"moved_to": "/x", "error": "e", "salvaged": 4, "unreadable": 1, "at": 1.0}
    facts["store"]["wal_loss"] = {"opened": 1.0, "epoch": "00000001"}
    facts["sensors"]["air"]["errors"] = {"read": 2, "checksum": 1}
    facts["throttled"] = {"raw": "0x0", "under_voltage": False}
    facts["cpu_temp_c"] = 48.5
    return facts


def test_every_number_of_the_health_message_has_a_series(tmp_path):
    facts = _rich_facts(tmp_path)
    assert unmapped(facts) == []
    text = metrics(facts)
    parsed = [s for f in text_string_to_metric_families(text) for s in f.samples]
    assert len(parsed) == sum(1 for p, _ in leaves(facts) if p != ("time",)) + 1  # and info
    lost = {
        (s.labels["stream"], s.labels["reason"]): s.value
        for s in parsed
        if s.name == "edge_agent_store_lost_batches_total"
    }
    assert lost == {("air", "dropped"): 3, ("air", "unstored"): 1}
    # a figure the table does not know is found, so a new health field cannot go without one
    facts["store"]["new_figure"] = 7
    assert unmapped(facts) == [("store", "new_figure")]


def test_what_the_page_shows_is_escaped(tmp_path):
    facts = _rich_facts(tmp_path)
    facts["node"] = '<img src=x onerror="alert(1)">'
    facts["uplink"]["broker"] = "mqtts://</td><script>x</script>"
    facts["problems"] = ["<b>bold</b>"]
    facts["ok"] = False
    html = page(facts)
    assert "<script>" not in html and "<img" not in html and "<b>bold" not in html
    assert "&lt;img src=x" in html
    text = metrics({**facts, "node": 'a"b\\c\nd'})
    info = next(f for f in text_string_to_metric_families(text) if f.name == "edge_agent_info")
    assert info.samples[0].labels["node"] == 'a"b\\c\nd'


TOKEN = "f00dfeed" * 4


def _post(port: int, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, headers=headers)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
    finally:
        conn.close()


def test_an_action_needs_the_nodes_token_in_a_header(tmp_path, caplog):
    """POST /actions/reload: refused without the token (401, with the Basic challenge a
    browser answers by asking), with a wrong one, from another site's page (403) and after
    too many wrong ones (429, even with the right one); done with it, as Basic auth's
    password or a Bearer token. The token is never logged."""
    import base64

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    path = tmp_path / "node.yaml"
    text = CONFIG.format(state=tmp_path / "state").replace(
        'http: {listen: "127.0.0.1:0"}', f'http: {{listen: "127.0.0.1:0", token_file: "{token_file}"}}'
    )
    path.write_text(text)
    agent = Agent(load_config(path), simulate=True, config_path=str(path))
    assert agent.http is not None
    port = agent.http.port
    basic = "Basic " + base64.b64encode(f"tech:{TOKEN}".encode()).decode()
    seen: dict = {}

    def body() -> None:
        try:
            for _ in range(600):
                if agent.snapshots.latest is not None:
                    break
                agent.stop_event.wait(0.05)
            seen["none"] = _post(port, "/actions/reload", {})
            seen["wrong"] = _post(port, "/actions/reload", {"Authorization": "Bearer " + "x" * 32})
            seen["url"] = _post(port, f"/actions/reload?token={TOKEN}", {})
            seen["cross"] = _post(
                port, "/actions/reload", {"Authorization": basic, "Origin": "http://evil.example"}
            )
            seen["unknown"] = _post(port, "/actions/format-disk", {"Authorization": basic})
            seen["basic"] = _post(port, "/actions/reload", {"Authorization": basic})
            for _ in range(600):  # the reload is acted on at the sampler's next tick
                if agent.reloads:
                    break
                agent.stop_event.wait(0.05)
            seen["reloads"] = agent.reloads
            seen["bearer"] = _post(port, "/actions/reload", {"Authorization": "Bearer " + TOKEN})
            for _ in range(12):
                _post(port, "/actions/reload", {"Authorization": "Bearer wrong-wrong-wrong-wrong"})
            seen["locked"] = _post(port, "/actions/reload", {"Authorization": "Bearer " + TOKEN})
        finally:
            agent.stop_event.set()

    t = threading.Thread(target=body)
    with caplog.at_level("DEBUG"):
        t.start()
        agent.run()
        t.join()
    code, headers, _ = seen["none"]
    assert code == 401 and headers["www-authenticate"].startswith('Basic realm="edge-agent page-node"')
    assert seen["wrong"][0] == 401 and seen["url"][0] == 401
    assert seen["cross"][0] == 403 and seen["unknown"][0] == 404
    assert seen["basic"][0] == 303 and seen["basic"][1]["location"] == "/" and seen["reloads"] >= 1
    assert seen["bearer"][0] == 303
    assert seen["locked"][0] == 429
    assert TOKEN not in caplog.text and "event=http_action action=reload" in caplog.text


def test_without_a_token_file_no_action_is_done(tmp_path):
    def body(node: Running) -> None:
        node.facts_when(lambda f: True)
        code, _, text = _post(node.port, "/actions/reload", {"Authorization": "Bearer " + TOKEN})
        assert code == 503 and "http.token_file" in text
        assert node.agent.reloads == 0
        assert 'action="/actions/' not in node.get("/")[2]  # no button for what cannot be done

    run_with(tmp_path, body)


def test_the_last_commission_report_is_on_the_page(tmp_path, capsys):
    """`edge-agent commission` keeps its report in the state directory; the page and the
    JSON show its verdict, which checks failed and when; a damaged one is no report."""
    from edge_agent.cli import main
    from edge_agent.node.status_facts import COMMISSION_FILE, last_commission

    path = tmp_path / "node.yaml"
    path.write_text(CONFIG.format(state=tmp_path / "state"))
    (tmp_path / "state").mkdir(mode=0o700)
    code = main(["commission", "--simulate", "--config", str(path), "--timeout", "1", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 1 and not printed["passed"]  # no broker on port 9
    kept = last_commission(str(tmp_path / "state"))
    assert kept is not None and kept["checks"] == printed["checks"] and kept["passed"] is False
    failed = [c["name"] for c in printed["checks"] if not c["ok"]]
    assert kept["summary"].startswith("FAILED: " + ", ".join(failed))
    kept_file = (tmp_path / "state" / COMMISSION_FILE).stat()
    assert kept_file.st_mode & 0o037 == 0  # 0640 at most (the umask may take more)
    if os.geteuid() == 0:  # run as root, still the state directory's owner's to read
        os.chown(tmp_path / "state", 65534, 65534)
        assert main(["commission", "--simulate", "--config", str(path), "--timeout", "1"]) == 1
        capsys.readouterr()
        kept_file = (tmp_path / "state" / COMMISSION_FILE).stat()
        assert (kept_file.st_uid, kept_file.st_gid) == (65534, 65534)
        os.chown(tmp_path / "state", 0, 0)

    def body(node: Running) -> None:
        facts = node.facts_when(lambda f: True)
        assert facts["commission"]["summary"] == kept["summary"]
        assert kept["summary"] in node.get("/")[2]
        (tmp_path / "state" / COMMISSION_FILE).write_bytes(b"\x00{not json")
        assert node.facts_when(lambda f: True)["commission"] is None
        assert "never run here" in node.get("/")[2]

    run_with(tmp_path, body)


def test_the_commission_action_keeps_the_running_agents_own_checks(tmp_path):
    """POST /actions/commission (with the token): the running agent's checks, from what it
    sees (no sensor opened twice), kept as the last report and shown on the page."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    path = tmp_path / "node.yaml"
    path.write_text(
        CONFIG.format(state=tmp_path / "state").replace(
            'http: {listen: "127.0.0.1:0"}', f'http: {{listen: "127.0.0.1:0", token_file: "{token_file}"}}'
        )
    )
    agent = Agent(load_config(path), simulate=True, config_path=str(path))
    assert agent.http is not None
    node = Running(agent)
    seen: dict = {}

    def body() -> None:
        try:
            node.facts_when(lambda f: all(v["channels"] for v in f["values"].values()))
            assert _post(node.port, "/actions/commission", {})[0] == 401
            seen["post"] = _post(node.port, "/actions/commission", {"Authorization": "Bearer " + TOKEN})
            seen["facts"] = node.facts_when(lambda f: f["commission"] is not None)
            seen["page"] = node.get("/")[2]
        except BaseException as exc:  # noqa: BLE001 (raised again on the main thread)
            seen["error"] = exc
        finally:
            agent.stop_event.set()

    t = threading.Thread(target=body)
    t.start()
    agent.run()
    t.join()
    if "error" in seen:
        raise seen["error"]
    assert seen["post"][0] == 303
    report = seen["facts"]["commission"]
    checks = {c["name"]: c for c in report["checks"]}
    assert report["source"] == "status page" and report["passed"] is False
    assert checks["sensor air"]["ok"] and checks["sensor mains"]["ok"] and checks["store"]["ok"]
    assert not checks["broker"]["ok"] and "disconnected to mqtt://127.0.0.1:9" in checks["broker"]["detail"]
    assert report["summary"].startswith("FAILED: ") and "broker" in report["summary"]
    assert report["summary"] in seen["page"]


def test_requests_of_any_shape_get_an_answer_and_the_listener_goes_on(tmp_path, capfd):
    """Fuzzed request lines, headers and bodies (hypothesis): each gets an HTTP status line
    (or, past the limits, a closed connection), no handler's traceback on stderr, and the
    next ordinary request is served."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    methods = st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"get", b"", b"\x00\xff", b"G" * 70000])
    paths = st.one_of(
        st.sampled_from([b"/", b"/metrics", b"/status.json", b"/actions/reload", b"/actions/", b"*", b""]),
        st.binary(max_size=200),
        st.builds(lambda n: b"/" + b"a" * n, st.integers(0, 70000)),
    )
    versions = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/9.9", b"HTTP/1", b"", b"\r"])
    headers = st.lists(st.binary(max_size=120), max_size=120)

    def body(node: Running) -> None:
        node.facts_when(lambda f: True)
        answered = [0, 0]

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(methods, paths, versions, headers, st.binary(max_size=300))
        def one(method, path, version, hdrs, payload):
            raw = method + b" " + path + b" " + version + b"\r\n" + b"".join(h + b"\r\n" for h in hdrs)
            with socket.create_connection(("127.0.0.1", node.port), timeout=30) as s:
                try:
                    s.sendall(raw + b"\r\n" + payload)
                    s.shutdown(socket.SHUT_WR)
                    reply = s.recv(16)
                except OSError:  # closed by the server before all was sent (past its limits)
                    reply = b""
            answered[0 if reply.startswith(b"HTTP/1.") else 1] += 1
            assert reply == b"" or reply.startswith(b"HTTP/1."), reply

        one()
        assert answered[0] > 0
        assert node.get("/status.json")[0] == 200

    run_with(tmp_path, body)
    err = capfd.readouterr().err  # (a log handler an earlier in-process main() left may complain)
    assert "Exception occurred during processing of request" not in err and "status_http.py" not in err


def test_a_reading_that_is_no_number_is_shown_as_such_and_the_json_stays_json(tmp_path):
    """A chip can hand over a NaN (it is flagged, not filtered): /status.json must stay JSON
    a browser parses (no NaN), the page and `status` say so, the metrics leave it out."""
    import math as _math
    from types import SimpleNamespace

    from edge_agent.node.status_facts import sensor_values

    pipe = SimpleNamespace(last=(1.0, _math.nan, 1), cfg=SimpleNamespace(unit="°C"))
    slot = SimpleNamespace(cfg=SimpleNamespace(name="air", type="bme680", interval=1.0), state="up")
    slot.channels = {"temperature": pipe}
    values = sensor_values(SimpleNamespace(slots=[slot]))
    assert values["air"]["channels"]["temperature"]["value"] is None
    facts = _rich_facts(tmp_path)
    facts["values"]["air"]["channels"]["temperature"]["value"] = None
    json.dumps(facts, allow_nan=False)  # strict JSON
    assert "not a number" in page(facts)
    names = [
        (s.name, s.labels.get("channel"))
        for f in text_string_to_metric_families(metrics(facts))
        for s in f.samples
    ]
    assert ("edge_agent_channel_value", "temperature") not in names and (
        "edge_agent_channel_value",
        "humidity",
    ) in names
