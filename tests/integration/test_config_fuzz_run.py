"""Valid configurations run: every key of the real node files changed to a value of any type
(as tests/test_config_fuzz.py does), and each file that check-config takes is then run by the
agent for a moment: it must become ready, keep going and stop cleanly, with no traceback.
What check-config accepts is exactly what the runtime can run (issue 14)."""

from __future__ import annotations

import yaml
from helpers import run_agent_for
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_config_fuzz import DOCS, mutated

from edge_agent.config import load_config
from edge_agent.errors import ConfigError

LOOPBACK = "mqtt://127.0.0.1:9"  # nothing listens: the uplink retries, sampling goes on


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
        HealthCheck.too_slow,
    ],
)
@given(doc_index=st.integers(0, len(DOCS) - 1), data=st.data(), delete=st.booleans())
def test_every_configuration_check_config_takes_runs(tmp_path_factory, doc_index, data, delete):
    doc = mutated(DOCS[doc_index], data, delete, keep=lambda p: p[:1] != ("mqtt",) or len(p) > 1)
    assume(isinstance(doc.get("mqtt"), dict))
    doc["mqtt"].pop("brokers", None)
    doc["mqtt"]["broker"] = LOOPBACK  # never the examples' real hosts
    doc.pop("state_dir", None)
    workdir = tmp_path_factory.mktemp("run")
    text = yaml.safe_dump(doc, allow_unicode=True)
    (workdir / "check.yaml").write_text(text)
    try:
        cfg = load_config(workdir / "check.yaml")
    except ConfigError:
        assume(False)
    assume(not cfg.store.path)  # the queue stays in the test's directory
    log = run_agent_for(workdir, text, 1.0)
    assert "Traceback" not in log, log
    assert "event=start " in log and "event=stop " in log, log
