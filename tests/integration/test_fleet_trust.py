"""`image provision --trust KEY.pub` puts operators' public keys on a card (a boot directory, and a
FAT image through mtools); the first boot imports them into the node's trust store with tight
modes; the node then verifies what that key signed. A private key never goes on a card."""

from __future__ import annotations

import hashlib
import json
import subprocess
import textwrap

import pytest
from helpers import require_tool

from edge_agent.cli import main
from edge_agent.fleet.counters import CounterStore
from edge_agent.fleet.keys import OperatorKey, TrustStore, read_public
from edge_agent.fleet.signed import Audience, sign, verify

NODE_YAML = textwrap.dedent("""\
    node:
      id: lamp-0042
    mqtt:
      broker: mqtts://backbone.example.net
    sensors:
      - type: bme680
        address: 0x77
""")


@pytest.fixture
def card(tmp_path, capsys):
    """A fake system root whose boot partition was provisioned with two trusted keys."""
    cfg = tmp_path / "node.yaml"
    cfg.write_text(NODE_YAML)
    for name in ("ops", "backup"):
        assert main(["keys", "new", "--out", str(tmp_path / "keys"), "--name", name]) == 0
    root = tmp_path / "root"
    boot = root / "boot" / "firmware"
    boot.mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text(
        "root:x:0:0::/root:/bin/sh\nedge-agent:x:991:992::/:/usr/sbin/nologin\n"
    )
    keys = [str(tmp_path / "keys" / f"{n}.pub") for n in ("ops", "backup")]
    args = ["image", "provision", str(boot), "--config", str(cfg), "--trust", keys[0], "--trust", keys[1]]
    assert main(args) == 0
    assert "trusts key" in capsys.readouterr().out
    return root, boot, tmp_path / "keys", cfg


def test_provision_puts_the_public_keys_on_the_card_and_inspect_names_them(card, capsys):
    _, boot, keys, _ = card
    ids = sorted(read_public(keys / f"{n}.pub").id for n in ("ops", "backup"))
    on_card = sorted(p.name for p in (boot / "edge-agent").iterdir() if p.name.startswith("trust-"))
    assert on_card == [f"trust-{i}.pub" for i in ids]
    manifest = json.loads((boot / "edge-agent" / "provision.json").read_text())
    assert manifest["trust"] == ids
    assert manifest["files"][f"edge-agent/trust-{ids[0]}.pub"]["secret"] is False
    assert main(["image", "inspect", str(boot), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trust"] == ids


def test_a_private_key_given_as_trust_is_refused_and_nothing_is_written(card, capsys):
    _, boot, keys, cfg = card
    before = {p: p.read_bytes() for p in boot.rglob("*") if p.is_file()}
    assert (
        main(["image", "provision", str(boot), "--config", str(cfg), "--trust", str(keys / "ops.key")]) == 1
    )
    err = capsys.readouterr().err
    assert "this is a private key, which never goes on a card" in err
    assert "edge-agent-ed25519-secret" not in err and (keys / "ops.key").read_text().split()[1] not in err
    assert {p: p.read_bytes() for p in boot.rglob("*") if p.is_file()} == before


def test_first_boot_imports_the_keys_root_owned_and_the_node_verifies_with_them(card, capsys):
    root, boot, keys, _ = card
    assert main(["image", "import", "--root", str(root)]) == 0
    log = capsys.readouterr().out
    trust = root / "etc" / "edge-agent" / "trust"
    assert (trust.stat().st_mode & 0o777, trust.stat().st_uid, trust.stat().st_gid) == (0o750, 0, 992)
    ops = read_public(keys / "ops.pub")
    files = {p.name: (p.stat().st_mode & 0o777, p.stat().st_uid, p.stat().st_gid) for p in trust.iterdir()}
    assert files == {
        f"{ops.id}.pub": (0o640, 0, 992),
        f"{read_public(keys / 'backup.pub').id}.pub": (0o640, 0, 992),
    }
    assert f"trust/{ops.id}.pub mode=0640 owner=0:992" in log.replace(str(trust.parent) + "/", "")
    assert not [p for p in (boot / "edge-agent").iterdir() if p.name.startswith("trust-")]
    store = TrustStore.load(trust)
    data = sign(
        "command",
        {"do": "health"},
        key=OperatorKey.read(keys / "ops.key"),
        target="node:lamp-0042",
        counter=1,
        expires=2_000_000_000,
        issued=1_700_000_000,
    )
    v = verify(
        data,
        kind="command",
        trust=store,
        audience=Audience("lamp-0042"),
        counters=CounterStore(root / "var" / "lib" / "edge-agent" / "fleet" / "counters.json"),
        now=1_800_000_000,
    )
    assert v.key_id == ops.id


@pytest.mark.parametrize("damage", ["sha", "another key"])
def test_a_damaged_trust_file_on_the_card_imports_nothing(card, damage, capsys):
    root, boot, keys, _ = card
    ops = read_public(keys / "ops.pub")
    f = boot / "edge-agent" / f"trust-{ops.id}.pub"
    if damage == "sha":
        f.write_bytes(f.read_bytes().rstrip(b"\n") + b" changed on the card\n")  # still a valid key file
    else:  # the manifest made to agree: the key inside is still not the one its name says
        other = (keys / "backup.pub").read_bytes()
        f.write_bytes(other)
        m = json.loads((boot / "edge-agent" / "provision.json").read_text())
        m["files"][f"edge-agent/{f.name}"]["sha256"] = hashlib.sha256(other).hexdigest()
        (boot / "edge-agent" / "provision.json").write_text(json.dumps(m))
    assert main(["image", "import", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert ("SHA-256" if damage == "sha" else "holds another key than its name says") in err, err
    assert not (root / "etc" / "edge-agent").exists()


def test_a_fat_card_image_carries_the_keys(tmp_path, capsys):
    sfdisk = require_tool("sfdisk", "fdisk")
    mkfs = require_tool("mkfs.fat", "dosfstools")
    require_tool("mcopy", "mtools")
    disk = tmp_path / "card.img"
    _fat_disk(disk, sfdisk, mkfs)
    cfg = tmp_path / "node.yaml"
    cfg.write_text(NODE_YAML)
    assert main(["keys", "new", "--out", str(tmp_path / "k")]) == 0
    pub = tmp_path / "k" / "operator.pub"
    assert main(["image", "provision", str(disk), "--config", str(cfg), "--trust", str(pub)]) == 0
    capsys.readouterr()
    assert main(["image", "inspect", str(disk), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trust"] == [read_public(pub).id]


def _fat_disk(path, sfdisk, mkfs):
    with open(path, "wb") as f:
        f.truncate(72 * 1024 * 1024)
    table = "label: dos\nstart=8192, size=131072, type=c\n"
    subprocess.run([sfdisk, "-q", str(path)], input=table.encode(), check=True, capture_output=True)
    subprocess.run(
        [mkfs, "-F", "32", "--offset", "8192", str(path), "65536"], check=True, capture_output=True
    )


def test_provision_batch_puts_every_card_s_keys_on_it(tmp_path, capsys):
    # --trust for the whole fleet, and a row's own trust column (";"-separated) besides it
    sfdisk, mkfs = require_tool("sfdisk", "fdisk"), require_tool("mkfs.fat", "dosfstools")
    require_tool("mcopy", "mtools")
    base = tmp_path / "base.img"
    _fat_disk(base, sfdisk, mkfs)
    cfg = tmp_path / "node.yaml"
    cfg.write_text(NODE_YAML)
    for name in ("city", "district", "vendor"):
        assert main(["keys", "new", "--out", str(tmp_path / "k"), "--name", name]) == 0
    ids = {n: read_public(tmp_path / "k" / f"{n}.pub").id for n in ("city", "district", "vendor")}
    csv = tmp_path / "nodes.csv"
    csv.write_text("node_id,trust\nlamp-0001,k/district.pub;k/vendor.pub\nlamp-0002,\n")
    out = tmp_path / "cards"
    args = ["image", "provision-batch", str(base), str(csv), "--out", str(out), "--config", str(cfg)]
    assert main([*args, "--trust", str(tmp_path / "k" / "city.pub")]) == 0
    capsys.readouterr()
    seen = {}
    for node in ("lamp-0001", "lamp-0002"):
        assert main(["image", "inspect", str(out / f"{node}.img"), "--json"]) == 0
        seen[node] = sorted(json.loads(capsys.readouterr().out)["trust"])
    assert seen == {
        "lamp-0001": sorted([ids["city"], ids["district"], ids["vendor"]]),
        "lamp-0002": [ids["city"]],
    }
    csv.write_text("node_id,trust\nlamp-0003,k/city.key\n")  # a private key: refused, nothing made
    assert main([*args[:4], "--out", str(tmp_path / "none"), "--config", str(cfg)]) != 0
    assert "nodes.csv:2 (lamp-0003)" in capsys.readouterr().err
    assert not (tmp_path / "none").exists() or not list((tmp_path / "none").iterdir())
