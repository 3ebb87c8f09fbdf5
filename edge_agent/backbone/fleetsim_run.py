"""The fleet simulator on the wire: one MQTT connection per virtual node (its own client
id, retained birth "online", a will "offline", QoS 1 with a bounded in-flight window),
as a node's uplink has. Each client runs paho's network thread, so a few thousand nodes
are a few thousand threads in one process: feasible up to a few thousand on one machine;
past that, start several ``fleet-sim`` processes with distinct ``--first`` numbers.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from edge_agent.backbone.fleetsim import Faults, Record, VirtualNode
from edge_agent.node.mqtt import ClientSettings, client_for_url, connect


@dataclass
class FleetSettings:
    broker: str
    nodes: int
    seals: int
    prefix: str = "edge"
    first: int = 0
    seed: int = 1
    interval: float = 0.0  # real seconds between seals (0: as fast as the window allows)
    window: int = 20  # QoS 1 messages in flight per node
    faults: Faults | None = None
    start_ms: int = 0  # simulated time of the first seal (0: now)
    realtime: bool = False  # stamp each seal with the wall clock (for seal-to-row latency)


def run_fleet(s: FleetSettings, mqtt_opts: dict | None = None) -> Record:
    """Publish ``s.seals`` seals of every node; return once every PUBACK came back."""
    record, rng = Record(), random.Random(s.seed)
    nodes = [
        VirtualNode(
            f"sim-{s.first + i:05d}",
            random.Random(rng.getrandbits(64)),
            record,
            prefix=s.prefix,
            faults=s.faults,
        )
        for i in range(s.nodes)
    ]
    clients: list[mqtt.Client] = []
    connected = threading.Semaphore(0)
    for node in nodes:
        settings = ClientSettings(client_id=node.node_id, **(mqtt_opts or {}))
        client, broker = client_for_url(s.broker, settings)
        client.max_inflight_messages_set(s.window)
        client.max_queued_messages_set(0)
        topic, will = node.status("offline")
        client.will_set(topic, will, qos=1, retain=True)
        client.on_connect = lambda c, u, f, rc, p=None: connected.release()
        connect(client, broker, settings)
        client.loop_start()
        clients.append(client)
    for _ in clients:
        if not connected.acquire(timeout=60):
            raise OSError(f"fleet-sim: not every node connected to {s.broker} within 60 s")
    for node, client in zip(nodes, clients):
        client.publish(*node.status("online"), qos=1, retain=True)
    now_ms = s.start_ms or int(time.time() * 1000)
    pending: list[mqtt.MQTTMessageInfo] = []
    for k in range(s.seals):
        for node, client in zip(nodes, clients):
            for topic, payload in node.seal(
                int(time.time() * 1000) if s.realtime else now_ms + k * node.period_ms * node.per_batch
            ):
                pending.append(client.publish(topic, payload, qos=1))
            if (k + 1) % 10 == 0:
                client.publish(*node.health(), qos=1)
        if s.interval:
            time.sleep(s.interval)
    for info in pending:
        info.wait_for_publish(timeout=120)
        if not info.is_published():
            raise OSError("fleet-sim: a batch was not acknowledged by the broker within 120 s")
    for node, client in zip(nodes, clients):
        client.publish(*node.status("offline"), qos=1, retain=True).wait_for_publish(timeout=30)
        client.disconnect()
        client.loop_stop()
    return record
