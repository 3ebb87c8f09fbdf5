"""Configuration: YAML validated on load into frozen, typed objects (see docs/configuration.md).

Every error names the file, the key path (``sensors[0].filters[1].window``) and what was
expected; unknown keys are errors. The parts, one concern each: ``model`` (the frozen
objects), ``document`` (the checks and their messages), ``loader`` (the file, the top-level
keys, the built-in default, command-line overrides), ``mqtt``, ``sensors`` (channels and
simulation), ``filters``, ``options`` (the drivers' declared options). No part knows a
sensor type: what depends on it comes from the driver (drivers/base.py).
"""

from edge_agent.config.loader import (
    DEFAULT_NODE_YAML,
    check_token,
    default_node_yaml,
    load_config,
    parse_config,
    parse_config_text,
    parse_listen,
    store_path,
    with_overrides,
)
from edge_agent.config.model import (
    AgentConfig,
    BrokerConfig,
    ChannelConfig,
    DerivedConfig,
    HttpConfig,
    MqttConfig,
    SensorConfig,
    StageConfig,
    StoreConfig,
)
from edge_agent.config.mqtt import is_loopback, parse_broker_url

__all__ = [
    "DEFAULT_NODE_YAML",
    "AgentConfig",
    "BrokerConfig",
    "ChannelConfig",
    "DerivedConfig",
    "HttpConfig",
    "MqttConfig",
    "SensorConfig",
    "StageConfig",
    "StoreConfig",
    "check_token",
    "default_node_yaml",
    "is_loopback",
    "load_config",
    "parse_broker_url",
    "parse_config",
    "parse_config_text",
    "parse_listen",
    "store_path",
    "with_overrides",
]
