"""Configuration: YAML validated on load into frozen, typed objects (see docs/configuration.md).

The names every other part imports live here; the parts are split by concern in this package.
"""

from edge_agent.config.sensors import (
    DEFAULT_NODE_YAML,
    AgentConfig,
    BrokerConfig,
    ChannelConfig,
    MqttConfig,
    SensorConfig,
    StageConfig,
    StoreConfig,
    default_node_yaml,
    is_loopback,
    load_config,
    parse_broker_url,
    parse_config,
    store_path,
    with_overrides,
)

__all__ = [
    "DEFAULT_NODE_YAML", "AgentConfig", "BrokerConfig", "ChannelConfig", "MqttConfig", "SensorConfig",
    "StageConfig", "StoreConfig", "default_node_yaml", "is_loopback", "load_config", "parse_broker_url",
    "parse_config", "store_path", "with_overrides",
]
