"""The ``edge-agent`` command line.

Exit codes: 0 success; 1 a runtime failure (broker unreachable for tail, bad
payload for decode); 2 bad usage or an invalid configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
import uuid

from edge_agent import __version__
from edge_agent.wire.dedupe import SeqTracker
from edge_agent.errors import ConfigError, EdgeAgentError, WireFormatError
from edge_agent.node.logfmt import setup_logging

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _sample_line(row: dict) -> str:
    t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(row["t"])) + f".{int(row['t'] * 1000) % 1000:03d}Z"
    return f"{row['node']} {row['stream']} seq={row['seq']} {t} {row['channel']}={row['value']} {row['unit']}"


def _print_batch(batch, as_json: bool) -> None:
    for row in batch.rows():
        print(json.dumps(row, ensure_ascii=False) if as_json else _sample_line(row), flush=True)


def cmd_run(args) -> int:
    from edge_agent.config import load_config, with_overrides
    from edge_agent.node.agent import Agent

    overrides = {"broker": args.broker, "state_dir": args.state_dir, "flush_interval": args.flush_interval}
    cfg = with_overrides(load_config(args.config), **overrides)
    if args.config is None and not args.simulate:
        raise ConfigError("no --config given: the built-in default node has only simulated "
                          "sensors, so it needs --simulate")
    return Agent(cfg, simulate=args.simulate, config_path=args.config, overrides=overrides).run()


def cmd_check_config(args) -> int:
    from edge_agent.config import load_config

    cfg = load_config(args.file)
    if args.json:
        print(json.dumps({"file": args.file, "valid": True, "node": cfg.node_id,
                          "sensors": [s.name for s in cfg.sensors]}))
    else:
        print(f"{args.file}: valid (node {cfg.node_id}, {len(cfg.sensors)} sensor(s): "
              f"{', '.join(s.name for s in cfg.sensors)})")
    return EXIT_OK


def cmd_decode(args) -> int:
    from edge_agent import wire

    try:
        with open(args.file, "rb") as f:
            payload = f.read()
    except OSError as exc:
        print(f"edge-agent decode: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAIL
    try:
        batch = wire.decode(payload)
    except WireFormatError as exc:
        print(f"edge-agent decode: {args.file}: {exc}", file=sys.stderr)
        return EXIT_FAIL
    if args.topic:
        where = wire.parse_data_topic(args.topic)
        if where is None or where != (batch.node, batch.stream):
            print(f"edge-agent decode: topic {args.topic!r} does not match the payload's node "
                  f"{batch.node!r} and stream {batch.stream!r}", file=sys.stderr)
            return EXIT_FAIL
    _print_batch(batch, args.json)
    return EXIT_OK


def cmd_tail(args) -> int:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from edge_agent import wire
    from edge_agent.config import parse_broker_url

    try:
        broker = parse_broker_url(args.broker)
    except ValueError as exc:
        raise ConfigError(f"command line: --broker: {exc}") from None
    persistent = args.client_id is not None
    client = mqtt.Client(CallbackAPIVersion.VERSION2,
                         client_id=args.client_id or f"edge-agent-tail-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    if broker.tls:
        import ssl
        client.tls_set_context(ssl.create_default_context(cafile=args.ca_file))
    done = threading.Event()
    state = {"messages": 0, "error": None}
    topic = args.topic or f"{args.prefix}/+/data/+"
    tracker = SeqTracker()

    def on_connect(c, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            state["error"] = f"broker refused the connection: {reason_code}"
            done.set()
            return
        c.subscribe(topic, qos=1)

    def on_message(c, userdata, msg):
        try:
            batch = wire.decode(msg.payload)
        except WireFormatError as exc:
            print(f"edge-agent tail: {msg.topic}: {exc}", file=sys.stderr, flush=True)
            return
        state["messages"] += 1
        if tracker.add(batch.node, batch.stream, batch.seq) or args.all:
            _print_batch(batch, args.json)
        else:
            print(f"edge-agent tail: duplicate {batch.node}/{batch.stream} seq={batch.seq} (not printed again)",
                  file=sys.stderr, flush=True)
        if args.count and state["messages"] >= args.count:
            done.set()

    def on_subscribe(c, userdata, mid, reason_codes, properties):
        if any(rc.is_failure for rc in reason_codes):
            state["error"] = f"subscription to {topic!r} refused: {reason_codes[0]}"
            done.set()
        else:
            logging.getLogger("edge_agent.tail").info("event=subscribed broker=%s topic=%s session=%s",
                                                      broker.url, topic,
                                                      "persistent" if persistent else "clean")

    client.on_connect = on_connect
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    props = Properties(PacketTypes.CONNECT)
    # A persistent session keeps our subscription and queued messages while we are away.
    props.SessionExpiryInterval = 7 * 86400 if persistent else 0
    try:
        client.connect(broker.host, broker.port, keepalive=30, clean_start=not persistent, properties=props)
    except OSError as exc:
        print(f"edge-agent tail: cannot connect to {broker.url}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAIL
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: done.set())
    client.loop_start()
    done.wait(args.timeout)
    client.disconnect()
    client.loop_stop()
    for r in tracker.report():
        if args.json:
            print(json.dumps({"summary": r}), file=sys.stderr)
        else:
            gaps = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in r["gaps"]) or "none"
            print(f"edge-agent tail: {r['node']}/{r['stream']}: seq {r['first']}..{r['last']}, "
                  f"{r['received']} received, {r['duplicates']} duplicates, {r['missing']} missing "
                  f"(gaps: {gaps})", file=sys.stderr)
    if state["error"]:
        print(f"edge-agent tail: {state['error']}", file=sys.stderr)
        return EXIT_FAIL
    if args.count and state["messages"] < args.count:
        print(f"edge-agent tail: {state['messages']} of {args.count} messages before the timeout",
              file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK


def _simulated_buses(config: str | None):
    from edge_agent.config import load_config
    from edge_agent.node.agent import simulated_buses

    return simulated_buses(load_config(config))


def cmd_probe(args) -> int:
    from drivers.bus import I2CBus
    from drivers.registry import SENSOR_TYPES

    number = 1 if args.bus is None else args.bus
    if args.simulate:
        buses = _simulated_buses(args.config)
        if args.bus is not None:
            buses = {n: b for n, b in buses.items() if n == args.bus}
    else:
        try:
            buses = {number: I2CBus.open(number)}
        except OSError as exc:
            print(f"edge-agent probe: cannot open /dev/i2c-{number}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_FAIL
    found = []
    for number, bus in sorted(buses.items()):
        for address in bus.scan():
            kinds = [(t, how) for t, cls in SENSOR_TYPES.items() if (how := cls.identify(bus, address))]
            found.append({"bus": number, "address": f"0x{address:02x}",
                          "chip": kinds[0][0] if kinds else None,
                          "evidence": kinds[0][1] if kinds else "answers, but matches no supported chip's ID"})
    if args.json:
        print(json.dumps(found))
    else:
        for f in found:
            print(f"i2c-{f['bus']} {f['address']}  {f['chip'] or 'unknown':<8} {f['evidence']}")
        if not found:
            print("no device answered")
    return EXIT_OK


def cmd_read(args) -> int:
    from drivers.bus import I2CBus
    from drivers.registry import SENSOR_TYPES
    from edge_agent.config import load_config
    from edge_agent.node.agent import simulated_buses

    cfg = load_config(args.config)
    try:
        sc = cfg.sensor(args.sensor)
    except KeyError:
        raise ConfigError(f"{cfg.source}: no sensor named {args.sensor!r} (configured: "
                          f"{', '.join(s.name for s in cfg.sensors)})") from None
    try:
        buses = simulated_buses(cfg) if args.simulate else {sc.bus: I2CBus.open(sc.bus)}
        driver = SENSOR_TYPES[sc.type](bus=buses[sc.bus], address=sc.address, **sc.driver_kwargs())
        try:
            reading = driver.read()
        finally:
            driver.close()
    except OSError as exc:
        print(f"edge-agent read: {sc.name} ({sc.type} at 0x{sc.address:02x} on i2c-{sc.bus}): "
              f"{exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAIL
    units = {c.name: c.unit for c in SENSOR_TYPES[sc.type].CHANNELS}
    if args.json:
        print(json.dumps({"sensor": sc.name, "type": sc.type, "address": f"0x{sc.address:02x}",
                          "t": reading.t, "values": {k: {"value": v, "unit": units[k]}
                                                     for k, v in reading.values.items()}}, ensure_ascii=False))
    else:
        for k, v in reading.values.items():
            print(f"{sc.name} {k} = {v:.6g} {units[k]}")
    return EXIT_OK


def cmd_compress_report(args) -> int:
    from edge_agent.wire.compress_report import compress_report, format_report, read_series

    ts, xs = read_series(args.file)
    r = compress_report(ts, xs, args.resolution, args.deviation, args.mode)
    print(json.dumps(r) if args.json else format_report(args.file, r))
    return EXIT_OK


def _credentials(args):
    from edge_agent.field.provision import Credentials

    return Credentials(ca=args.ca, cert=args.cert, key=args.key, password_file=args.password_file,
                       wifi_ssid=args.wifi_ssid, wifi_psk_file=args.wifi_psk_file, hostname=args.hostname)


def cmd_image_provision(args) -> int:
    from edge_agent.field.provision import provision

    m = provision(args.target, args.config, _credentials(args))
    if args.json:
        print(json.dumps(m))
    else:
        secrets = [rel for rel, f in m["files"].items() if f["secret"]]
        print(f"{args.target}: provisioned node {m['node_id']} (instance {m['instance_id']}), "
              f"{len(m['files'])} files, {len(secrets)} of them secret: removed from the card at first boot")
    return EXIT_OK


def cmd_image_inspect(args) -> int:
    from edge_agent.field.provision import inspect

    info = inspect(args.target)
    if args.json:
        print(json.dumps(info))
        return EXIT_OK
    print(f"{info['target']}:")
    if not info["provisioned"] and "node_id" not in info:
        print("  not provisioned for edge-agent")
    for key in ("node_id", "site", "instance_id", "provisioned_at", "tool", "broker", "username", "sensors"):
        if info.get(key) is not None:
            value = ", ".join(info[key]) if isinstance(info[key], list) else info[key]
            print(f"  {key.replace('_', ' ')}: {value}")
    if info.get("config_valid") is False:
        print(f"  configuration INVALID: {info['config_error']}")
    present = [n for n, there in info["credentials"].items() if there]
    print(f"  credentials present: {', '.join(present) or 'none'}")
    ci = info["cloud_init"]
    print(f"  cloud-init: instance {ci['instance_id'] or '-'}, hostname {ci['hostname'] or '-'}, "
          f"Wi-Fi {', '.join(ci['wifi_ssids']) or '-'}")
    return EXIT_OK


def cmd_image_provision_batch(args) -> int:
    from edge_agent.field.provision import provision_batch

    tty = sys.stderr.isatty()

    def progress(done: int, total: int, node: str) -> None:
        width = 30
        bar = "#" * (width * done // total) + "-" * (width - width * done // total)
        line = f"[{bar}] {done}/{total} {node}"
        print(f"\r{line:<70}" if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    summary = provision_batch(args.base, args.csv, args.out, args.config, progress=progress)
    if tty:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    else:
        for img in summary["images"]:
            print(f"{img['image']}: node {img['node_id']}{' at ' + img['site'] if img['site'] else ''}, "
                  f"instance {img['instance_id']}")
        print(f"{len(summary['images'])} image(s) in {summary['out']} in {summary['seconds']} s")
    return EXIT_OK


def cmd_image_import(args) -> int:
    from edge_agent.field.provision import import_boot

    result = import_boot(root=args.root, boot=args.boot, dest=args.dest, owner=args.owner,
                         log=lambda line: print(line, flush=True))
    if args.json:
        print(json.dumps(result))
    return EXIT_OK


def cmd_commission(args) -> int:
    from edge_agent.field.commission import commission
    from edge_agent.config import load_config
    from edge_agent.node.agent import hardware_factory, simulated_factory

    cfg = load_config(args.config)
    factory = simulated_factory(cfg) if args.simulate else hardware_factory
    try:
        checks = commission(cfg, factory, timeout=args.timeout)
    finally:
        getattr(factory, "stop", lambda: None)()
    passed = all(c.ok for c in checks)
    if args.json:
        print(json.dumps({"node": cfg.node_id, "passed": passed,
                          "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail, "hint": c.hint}
                                     for c in checks]}, ensure_ascii=False))
    else:
        print(f"edge-agent {__version__} commissioning node {cfg.node_id}")
        for c in checks:
            print(c.line())
        failed = sum(not c.ok for c in checks)
        print("COMMISSIONING PASSED" if passed else f"COMMISSIONING FAILED: {failed} of {len(checks)} checks")
    return EXIT_OK if passed else EXIT_FAIL


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-agent", description="Sensor node agent: sample, "
                                "smooth, compress, store and forward over MQTT.")
    p.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run the agent until SIGTERM/SIGINT")
    r.add_argument("--config", metavar="FILE", help="node configuration (default: the built-in "
                   "simulated node, with --simulate)")
    r.add_argument("--simulate", action="store_true", help="use simulated buses and chips")
    r.add_argument("--broker", metavar="URL", help="override mqtt.broker (mqtt://host:port, mqtts://...)")
    r.add_argument("--state-dir", metavar="DIR", help="override state_dir (where the queue lives)")
    r.add_argument("--flush-interval", metavar="DURATION", help="override flush_interval (e.g. 10s)")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check-config", help="validate a configuration file (exit 0 valid, 2 invalid)")
    c.add_argument("file", metavar="FILE")
    c.add_argument("--json", action="store_true", help="machine-readable result")
    c.set_defaults(func=cmd_check_config)

    t = sub.add_parser("tail", help="subscribe to data topics, decode and print samples")
    t.add_argument("--broker", required=True, metavar="URL")
    t.add_argument("--json", action="store_true", help="one JSON object per sample")
    t.add_argument("--count", type=int, default=0, metavar="N", help="stop after N data messages")
    t.add_argument("--timeout", type=float, default=None, metavar="S", help="stop after S seconds")
    t.add_argument("--client-id", metavar="ID", help="use a persistent session under this client id, "
                   "so nothing is missed across restarts of tail")
    t.add_argument("--prefix", default="edge", help="topic prefix (default: edge)")
    t.add_argument("--topic", metavar="FILTER", help="subscription filter (default: PREFIX/+/data/+)")
    t.add_argument("--ca-file", metavar="FILE", help="CA bundle for mqtts:// brokers")
    t.add_argument("--all", action="store_true", help="print duplicates too (they are always reported)")
    t.set_defaults(func=cmd_tail)

    pr = sub.add_parser("probe", help="scan an I2C bus and name each chip by its ID registers")
    pr.add_argument("--bus", type=int, default=None, metavar="N", help="/dev/i2c-N (default 1)")
    pr.add_argument("--simulate", action="store_true", help="the simulated buses of the configuration")
    pr.add_argument("--config", metavar="FILE", help="node configuration (for --simulate; default: built-in)")
    pr.add_argument("--json", action="store_true", help="a JSON list")
    pr.set_defaults(func=cmd_probe)

    rd = sub.add_parser("read", help="one reading of one configured sensor, with units")
    rd.add_argument("sensor", metavar="SENSOR", help="the sensor's name in the configuration")
    rd.add_argument("--config", metavar="FILE", help="node configuration (default: built-in)")
    rd.add_argument("--simulate", action="store_true", help="on the simulated bus")
    rd.add_argument("--json", action="store_true", help="one JSON object")
    rd.set_defaults(func=cmd_read)

    cr = sub.add_parser("compress-report", help="what the core would do to a CSV of t,value rows")
    cr.add_argument("file", metavar="FILE.csv", help="rows of t,value (Unix seconds), a header allowed")
    cr.add_argument("--resolution", type=float, required=True, metavar="R", help="quantisation step")
    cr.add_argument("--deviation", type=float, default=None, metavar="E",
                    help="allowed deviation (omit for lossless at the resolution)")
    cr.add_argument("--mode", choices=["swing", "bound"], default="swing",
                    help="with --deviation: the swinging door (points on lines), or error-bounded "
                    "quantisation of every sample (default swing)")
    cr.add_argument("--json", action="store_true", help="one JSON object")
    cr.set_defaults(func=cmd_compress_report)

    cm = sub.add_parser("commission", help="on site: one pass/fail report of sensors, store, clock, broker "
                        "and a round trip (exit 0 only when all pass)")
    cm.add_argument("--config", metavar="FILE", help="node configuration (default: built-in, with --simulate)")
    cm.add_argument("--simulate", action="store_true", help="simulated sensors")
    cm.add_argument("--timeout", type=float, default=10.0, metavar="S", help="for the broker checks (default 10)")
    cm.add_argument("--json", action="store_true", help="one JSON object")
    cm.set_defaults(func=cmd_commission)

    im = sub.add_parser("image", help="SD images: provision a node's card, inspect one")
    isub = im.add_subparsers(dest="image_command", required=True, metavar="ACTION")
    ip = isub.add_parser("provision", help="write one node's configuration and credentials onto the "
                         "boot partition of an image, a card or a mounted boot directory")
    ip.add_argument("target", metavar="IMAGE_OR_BOOT_DIR")
    ip.add_argument("--config", required=True, metavar="FILE", help="the node configuration (validated first)")
    ip.add_argument("--ca", metavar="FILE", help="CA certificate of the broker (PEM)")
    ip.add_argument("--cert", metavar="FILE", help="client certificate for mutual TLS (PEM)")
    ip.add_argument("--key", metavar="FILE", help="its private key (PEM)")
    ip.add_argument("--password-file", metavar="FILE", help="the broker password, on its first line")
    ip.add_argument("--wifi-ssid", metavar="SSID", help="Wi-Fi network (cloud-init network-config)")
    ip.add_argument("--wifi-psk-file", metavar="FILE", help="its passphrase, on the first line")
    ip.add_argument("--hostname", metavar="NAME", help="host name (cloud-init user-data)")
    ip.add_argument("--json", action="store_true", help="print the manifest as JSON")
    ip.set_defaults(func=cmd_image_provision)
    ii = isub.add_parser("inspect", help="what a card or image carries (never a secret)")
    ii.add_argument("target", metavar="IMAGE_OR_BOOT_DIR")
    ii.add_argument("--json", action="store_true", help="one JSON object")
    ii.set_defaults(func=cmd_image_inspect)

    ib = isub.add_parser("provision-batch", help="one provisioned card image per row of a CSV of nodes")
    ib.add_argument("base", metavar="BASE_IMAGE")
    ib.add_argument("csv", metavar="NODES_CSV", help="header: node_id[,site,hostname,config,ca,cert,key,"
                    "password_file,wifi_ssid,wifi_psk_file]; paths relative to the CSV")
    ib.add_argument("--out", required=True, metavar="DIR", help="where NODE_ID.img files are made")
    ib.add_argument("--config", metavar="TEMPLATE", help="configuration for rows without a config column "
                    "(node.id is set from the row)")
    ib.add_argument("--json", action="store_true", help="print the summary as JSON")
    ib.set_defaults(func=cmd_image_provision_batch)

    it = isub.add_parser("import", help="first boot, as root: move the provisioned files from the boot "
                         "partition into the configuration directory (edge-agent-import.service)")
    it.add_argument("--root", default="/", metavar="DIR", help="the system's root (default /)")
    it.add_argument("--boot", default=None, metavar="DIR", help="the boot partition (default /boot/firmware, "
                    "else /boot)")
    it.add_argument("--dest", default="/etc/edge-agent", metavar="DIR", help="configuration directory")
    it.add_argument("--owner", default="edge-agent", metavar="USER", help="the service user (or UID:GID)")
    it.add_argument("--json", action="store_true", help="print what was done as JSON")
    it.set_defaults(func=cmd_image_import)

    d = sub.add_parser("decode", help="decode one saved payload and print its samples")
    d.add_argument("file", metavar="FILE")
    d.add_argument("--json", action="store_true", help="one JSON object per sample")
    d.add_argument("--topic", help="the topic it was received on, checked against the payload")
    d.set_defaults(func=cmd_decode)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EdgeAgentError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
