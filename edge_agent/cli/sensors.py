"""The technician's sensor tools: ``probe`` (scan a bus, name each chip by what it answers)
and ``read`` (one reading of one configured sensor, with units)."""

from __future__ import annotations

import argparse
import json
import sys

from edge_agent.cli.exitcodes import EXIT_FAIL, EXIT_OK
from edge_agent.errors import ConfigError


def cmd_probe(args: argparse.Namespace) -> int:
    from drivers.registry import SENSOR_TYPES
    from edge_agent.config import load_config
    from edge_agent.node.hardware import Hardware, SimulatedHardware

    hw: Hardware | SimulatedHardware
    if args.simulate:
        hw = SimulatedHardware(load_config(args.config))
    else:
        hw = Hardware()
        number = 1 if args.bus is None else args.bus
        try:
            hw.bus(number)
        except OSError as exc:
            print(f"edge-agent probe: cannot open /dev/i2c-{number}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_FAIL
    found = []
    with hw:
        for number, bus in sorted(hw.buses.items()):
            if args.bus is not None and number != args.bus:
                continue
            for address in bus.scan():
                kinds = [(t, how) for t, cls in SENSOR_TYPES.items() if (how := cls.identify(bus, address))]
                found.append(
                    {
                        "bus": number,
                        "address": f"0x{address:02x}",
                        "chip": kinds[0][0] if kinds else None,
                        "evidence": kinds[0][1] if kinds else "answers, but matches no supported chip's ID",
                    }
                )
    if args.json:
        print(json.dumps(found))
    else:
        for f in found:
            print(f"i2c-{f['bus']} {f['address']}  {f['chip'] or 'unknown':<8} {f['evidence']}")
        if not found:
            print("no device answered")
    return EXIT_OK


def cmd_read(args: argparse.Namespace) -> int:
    from drivers.registry import SENSOR_TYPES
    from edge_agent.config import load_config
    from edge_agent.node.hardware import (
        FIRST_READING_WAIT,
        Hardware,
        SimulatedHardware,
        first_reading,
        location,
    )

    cfg = load_config(args.config)
    try:
        sc = cfg.sensor(args.sensor)
    except KeyError:
        raise ConfigError(
            f"{cfg.source}: no sensor named {args.sensor!r} (configured: "
            f"{', '.join(s.name for s in cfg.sensors)})"
        ) from None
    where = f"{sc.name} ({sc.type} at {location(sc)})"
    try:
        with SimulatedHardware(cfg) if args.simulate else Hardware() as hw:
            driver = hw.make(sc)
            try:
                reading = first_reading(driver)
            finally:
                driver.close()
    except OSError as exc:
        print(f"edge-agent read: {where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAIL
    if not reading.values:
        print(f"edge-agent read: {where}: no result within {FIRST_READING_WAIT:g} s", file=sys.stderr)
        return EXIT_FAIL
    units = {c.name: c.unit for c in SENSOR_TYPES[sc.type].CHANNELS}
    if args.json:
        print(
            json.dumps(
                {
                    "sensor": sc.name,
                    "type": sc.type,
                    "address": f"0x{sc.address:02x}",
                    "t": reading.t,
                    "values": {k: {"value": v, "unit": units[k]} for k, v in reading.values.items()},
                },
                ensure_ascii=False,
            )
        )
    else:
        for k, v in reading.values.items():
            print(f"{sc.name} {k} = {v:.6g} {units[k]}".rstrip())
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction) -> None:
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
