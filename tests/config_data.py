"""Test data of the configuration: a good node file, and writing one into a test folder."""

from __future__ import annotations

import textwrap

GOOD = """\
node: {id: lamp-0042}
flush_interval: 30s
state_dir: /tmp/x
mqtt:
  broker: mqtts://backbone.example.net
  topic_prefix: city/north
sensors:
  - name: air
    type: bme680
    address: 0x76
    interval: 2s
    filters:
      - {type: median, window: 5}
      - {type: ema, alpha: 0.3}
    channels:
      temperature: {resolution: 0.1, deadband: 0.1}
      gas: {enabled: false}
"""


def write(tmp_path, text, name="node.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p
