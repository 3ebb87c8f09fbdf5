"""edge_agent/fleet/bundle.py and staging.py: a bundle built and signed on the operator's side is
verified into a staging folder on the node's; every bad bundle is refused with its reason, and
nothing outside the staging folder is written (the whole tree listed before and after)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.fleet import canonical
from edge_agent.fleet.bundle import MANIFEST_NAME, build
from edge_agent.fleet.counters import CounterStore
from edge_agent.fleet.keys import OperatorKey, TrustStore
from edge_agent.fleet.refusal import Refused
from edge_agent.fleet.signed import Audience, sign
from edge_agent.fleet.staging import Limits, StagingError, accept, stage

PLAT = "cp311-linux_x86_64"
OPERATOR = OperatorKey(bytes(range(32)))
STRANGER = OperatorKey(bytes(range(1, 33)))
TRUST = TrustStore([OPERATOR.public])
LAMP = Audience("lamp-0042")
WHEELS = {"edge_agent-0.2.0-py3-none-any.whl": 200_000, "paho_mqtt-2.1.0-py3-none-any.whl": 50_000}


@pytest.fixture
def site(tmp_path):
    """The operator's wheels, and a node: its state (counters) and its staging root."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for i, (name, size) in enumerate(WHEELS.items()):
        (wheels / name).write_bytes(hashlib.shake_256(bytes([i])).digest(size))
    node = tmp_path / "node"
    (node / "staging").mkdir(parents=True)
    return tmp_path, sorted(wheels.iterdir()), CounterStore(node / "state" / "fleet" / "counters.json")


def make(site, name="b.tar", *, key=OPERATOR, version="0.2.0", platform=PLAT, counter=100, wheels=None):
    root, all_wheels, _ = site
    out = root / name
    build(
        wheels or all_wheels,
        key=key,
        version=version,
        platform=platform,
        target="node:lamp-0042",
        out=out,
        counter=counter,
    )
    return out


def listing(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its kind, mode and content hash (links not followed)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            st = p.lstat()
            digest = (
                hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else None
            )
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size if digest else 0, digest)
    return out


def verify_into_staging(site, bundle, limits=None):
    root, _, counters = site
    return stage(
        bundle,
        root / "node" / "staging",
        trust=TRUST,
        audience=LAMP,
        counters=counters,
        platform=PLAT,
        limits=limits or Limits(),
    )


def members(bundle: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(bundle) as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]


def rewrite(bundle: Path, items, fmt=tarfile.USTAR_FORMAT) -> Path:
    with tarfile.open(bundle, "w", format=fmt) as tar:
        for info, data in items:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return bundle


def test_a_good_bundle_is_staged_whole_and_records_nothing_until_accepted(site, caplog):
    root, wheels, counters = site
    bundle = make(site)
    caplog.set_level("INFO", logger="edge_agent.fleet")
    staged = verify_into_staging(site, bundle)
    assert staged.version == "0.2.0" and staged.platform == PLAT and staged.manifest.counter == 100
    assert staged.directory.parent == root / "node" / "staging"
    assert staged.directory.stat().st_mode & 0o777 == 0o700
    got = {p.name: p.read_bytes() for p in staged.directory.iterdir()}
    assert {n: got[n] for n in WHEELS} == {w.name: w.read_bytes() for w in wheels}
    assert set(got) == {*WHEELS, MANIFEST_NAME}
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in staged.directory.iterdir())
    assert not counters.path.exists()
    assert any(
        "event=bundle_verified" in r.getMessage() and "version=0.2.0" in r.getMessage()
        for r in caplog.records
    )
    accept(staged, counters)
    assert counters.last("update") == (100, staged.manifest.digest)
    with pytest.raises(Refused, match="replayed"):
        verify_into_staging(site, bundle)


def _bad_signature(site):
    bundle = make(site)
    items = members(bundle)
    env = json.loads(items[0][1])
    payload = json.loads(base64.b64decode(env["payload"]))
    payload["body"]["version"] = "0.2.1"  # the signature is left as it was
    env["payload"] = base64.b64encode(canonical.dumps(payload)).decode()
    items[0] = (items[0][0], canonical.dumps(env))
    return rewrite(bundle, items)


def _older(site):
    accept(verify_into_staging(site, make(site, "new.tar", version="0.2.0", counter=200)), site[2])
    return make(site, "old.tar", counter=150)


def _corrupt(site):
    bundle = make(site)
    data = bytearray(bundle.read_bytes())
    at = data.index((site[0] / "wheels" / "paho_mqtt-2.1.0-py3-none-any.whl").read_bytes()[:64]) + 1000
    data[at] ^= 0x01  # one bit of a wheel; every size is as the manifest says
    bundle.write_bytes(bytes(data))
    return bundle


BAD = {  # the six of issue 16, and what each one says
    "bad signature": (_bad_signature, "bad_signature", Limits()),
    "unknown key": (lambda s: make(s, key=STRANGER), "unknown_key", Limits()),
    "older version": (_older, "older", Limits()),
    "wrong platform": (lambda s: make(s, platform="cp311-linux_armv7l"), "wrong_platform", Limits()),
    "corrupt file": (_corrupt, "corrupt_file", Limits()),
    "oversize": (lambda s: make(s), "oversize", Limits(max_bundle=100_000)),
    "oversize file": (lambda s: make(s), "oversize", Limits(max_bundle=1000, max_manifest=2000, max_files=2)),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_the_bad_bundles_are_refused_and_nothing_outside_staging_is_written(site, case, caplog):
    root = site[0]
    bundle = BAD[case][0](site)
    before = listing(root)
    with pytest.raises(Refused) as exc:
        verify_into_staging(site, bundle, BAD[case][2])
    assert exc.value.reason == BAD[case][1], exc.value
    assert listing(root) == before  # the staging folder made for it is gone too
    assert f"event=bundle_refused bundle={bundle} reason={BAD[case][1]} " in caplog.text


def _member(name: str, kind: bytes = tarfile.REGTYPE, **attrs) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    for k, v in attrs.items():
        setattr(info, k, v)
    return info


def _with_member(site, info: tarfile.TarInfo, data: bytes | None, fmt=tarfile.USTAR_FORMAT, replace=True):
    """A good bundle whose paho wheel is replaced by (or followed by) another member."""
    bundle = make(site)
    items = members(bundle)
    items = [*items[:-1], (info, data)] if replace else [*items, (info, data)]
    return rewrite(bundle, items, fmt)


def _raw(site, data: bytes) -> Path:
    path = site[0] / "raw.tar"
    path.write_bytes(data)
    return path


PAHO = "paho_mqtt-2.1.0-py3-none-any.whl"
UNSAFE = {  # case: (the bundle, its reason, what the refusal says)
    "path traversal": (lambda s: _with_member(s, _member("../" + PAHO), b"x"), "unsafe_member", "not a flat"),
    "absolute path": (
        lambda s: _with_member(s, _member("/tmp/" + PAHO), b"x"),
        "unsafe_member",
        "not a flat",
    ),
    "symlink": (
        lambda s: _with_member(s, _member(PAHO, tarfile.SYMTYPE, linkname="/etc/passwd"), None),
        "unsafe_member",
        "is a symbolic link",
    ),
    "hard link": (
        lambda s: _with_member(s, _member(PAHO, tarfile.LNKTYPE, linkname="x"), None),
        "unsafe_member",
        "is a hard link",
    ),
    "device": (
        lambda s: _with_member(s, _member(PAHO, tarfile.CHRTYPE, devmajor=1, devminor=3), None),
        "unsafe_member",
        "is a character device",
    ),
    "directory": (
        lambda s: _with_member(s, _member("wheels", tarfile.DIRTYPE), None),
        "unsafe_member",
        "is a directory",
    ),
    "pax header": (
        lambda s: _with_member(
            s, _member(PAHO, pax_headers={"path": "../../" + PAHO}), b"x", tarfile.PAX_FORMAT
        ),
        "unsafe_member",
        "is a pax header",
    ),
    "member not listed": (
        lambda s: _with_member(s, _member("other-1.0-py3-none-any.whl"), b"x", replace=False),
        "unexpected_member",
        "'other-1.0-py3-none-any.whl' is not in the manifest",
    ),
    "member twice": (
        lambda s: _with_member(s, *members(make(s, "x.tar"))[-1], replace=False),
        "unexpected_member",
        "or is there twice",
    ),
    "member missing": (
        lambda s: rewrite(make(s), members(make(s, "y.tar"))[:-1]),
        "missing_file",
        "not in the bundle: paho",
    ),
    "wrong size": (
        lambda s: _with_member(s, _member(PAHO), b"x" * 10),
        "corrupt_file",
        "10 bytes, the manifest says 50,000",
    ),
    "manifest not first": (
        lambda s: rewrite(make(s), members(make(s, "z.tar"))[::-1]),
        "malformed",
        "the first member is not manifest",
    ),
    "truncated": (lambda s: _raw(s, make(s).read_bytes()[:150_000]), "malformed", "(truncated)"),
    "trailing bytes": (lambda s: _raw(s, make(s).read_bytes() + b"junk"), "malformed", "after the end"),
    "not a tar": (lambda s: _raw(s, b"PK\x03\x04" + bytes(2000)), "malformed", "bad checksum"),
    "gzip": (lambda s: _raw(s, gzip.compress(make(s).read_bytes())), "malformed", "damaged tar header"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_archives_are_refused_and_nothing_outside_staging_is_written(site, case):
    root = site[0]
    bundle = UNSAFE[case][0](site)
    before = listing(root)
    with pytest.raises(Refused) as exc:
        verify_into_staging(site, bundle)
    assert exc.value.reason == UNSAFE[case][1] and UNSAFE[case][2] in exc.value.detail, exc.value
    assert listing(root) == before
    assert not any(p.name == PAHO for p in Path("/tmp").iterdir())


def test_a_signed_manifest_naming_an_unsafe_path_is_refused(site):
    body = {
        "files": [{"name": "../../etc/x.whl", "sha256": "0" * 64, "size": 1}],
        "platform": PLAT,
        "version": "1",
    }
    envelope = sign("update", body, key=OPERATOR, target="node:lamp-0042", counter=5, expires=2**40)
    bundle = rewrite(site[0] / "m.tar", [(_member(MANIFEST_NAME), envelope)])
    with pytest.raises(Refused, match=r"files\[0\] is not a name"):
        verify_into_staging(site, bundle)


@pytest.mark.parametrize(
    "wheel, said",
    [
        (
            "numpy-2.0.0-cp311-cp311-manylinux_2_17_aarch64.whl",
            "built for manylinux_2_17_aarch64, not x86_64",
        ),
        ("numpy-2.0.0-cp312-cp312-manylinux_2_17_x86_64.whl", "built for Python cp312"),
        ("edge_agent-0.3.0-py3-none-any.whl", "no edge_agent-0.2.0-"),
        ("notawheel.zip", "not a wheel"),
        ("pyyaml-6.0.4-cp311-cp311-" + "manylinux_2_17_x86_64." * 4 + "whl", "at most 100 bytes"),
    ],
)
def test_the_operator_is_told_of_a_wheel_the_node_could_not_install(site, wheel, said):
    root, wheels, _ = site
    extra = root / wheel
    extra.write_bytes(b"x")
    chosen = [extra] if wheel.startswith("edge_agent") else [*wheels, extra]
    with pytest.raises(ValueError, match=said):
        make(site, wheels=chosen)
    assert not (root / "b.tar").exists()


def test_abi3_wheels_of_an_older_python_fit(site):
    root, wheels, _ = site
    nacl = root / "pynacl-1.6.2-cp38-abi3-manylinux_2_34_x86_64.whl"
    nacl.write_bytes(b"x" * 100)
    bundle = make(site, wheels=[*wheels, nacl])
    assert {n for n, _, _ in verify_into_staging(site, bundle).files} == {*WHEELS, nacl.name}


def test_the_commands_build_and_verify_and_say_why_they_refuse(site, tmp_path, capsys):
    root, wheels, _ = site
    key = tmp_path / "keys"
    assert main(["keys", "new", "--out", str(key)]) == 0
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "op.pub").write_bytes((key / "operator.pub").read_bytes())
    out = tmp_path / "r.tar"
    args = ["--version", "0.2.0", "--platform", PLAT, "--target", "node:lamp-0042", "--out", str(out)]
    assert main(["fleet", "bundle", "--key", str(key / "operator.key"), *args, *map(str, wheels)]) == 0
    assert "edge-agent 0.2.0 for cp311-linux_x86_64, 2 files" in capsys.readouterr().out
    node = ["--trust-dir", str(trust), "--state-dir", str(root / "node" / "state"), "--platform", PLAT]
    node += ["--staging-dir", str(root / "node" / "staging")]
    before = listing(root)
    assert main(["update", "verify", str(out), "--node-id", "lamp-0042", *node, "--json"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["verified"] and said["version"] == "0.2.0" and len(said["files"]) == 2
    assert main(["update", "verify", str(out), "--node-id", "lamp-0043", *node]) == 1
    assert "refused (wrong_target): for node:lamp-0042, this is node:lamp-0043" in capsys.readouterr().err
    assert listing(root) == before  # verify records nothing and leaves no staging behind
    # a bundle for a group: the node is in it by its configuration's node.groups, or by --group
    grouped = tmp_path / "g.tar"
    gargs = [*args[:4], "--target", "group:district-7", "--out", str(grouped)]
    assert main(["fleet", "bundle", "--key", str(key / "operator.key"), *gargs, *map(str, wheels)]) == 0
    conf = tmp_path / "node.yaml"
    for groups, verdict in ((["pilot", "district-7"], 0), (["district-8"], 1)):
        conf.write_text(
            f"node: {{id: lamp-0050, groups: {json.dumps(groups)}}}\nmqtt: {{broker: 'mqtt://127.0.0.1:1883'}}\n"
            "sensors: [{type: bme680, sim: {}}]\n"
        )
        assert main(["update", "verify", str(grouped), "--config", str(conf), *node]) == verdict, groups
    assert "refused (wrong_target)" in capsys.readouterr().err
    assert (
        main(["update", "verify", str(grouped), "--config", str(conf), "--group", "district-7", *node]) == 0
    )
    assert main(["fleet", "bundle", "--key", str(key / "operator.key"), *args, str(wheels[1])]) == 2
    assert "no edge_agent-0.2.0-*.whl" in capsys.readouterr().err


def test_a_bundle_is_never_written_over(site):
    bundle = make(site)
    before = bundle.read_bytes()
    with pytest.raises(ValueError, match="exists; a bundle is never written over"):
        make(site, counter=101)
    assert bundle.read_bytes() == before


def test_a_staging_folder_that_cannot_be_made_is_said_not_raised(site, tmp_path, capsys):
    _, _, counters = site
    bundle = make(site)
    (tmp_path / "file").write_text("x")
    with pytest.raises(StagingError, match="cannot make a staging folder: Not a directory"):
        stage(bundle, tmp_path / "file" / "s", trust=TRUST, audience=LAMP, counters=counters, platform=PLAT)
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / f"{OPERATOR.public.id}.pub").write_bytes(OPERATOR.public.line())
    node = ["--node-id", "lamp-0042", "--trust-dir", str(trust), "--platform", PLAT]
    node += ["--state-dir", str(tmp_path / "state")]
    assert main(["update", "verify", str(bundle), *node, "--staging-dir", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err
    assert "--staging-dir" in err and "cannot make a folder there" in err and "Traceback" not in err
    for bad in ("0", "-1", "lots"):
        with pytest.raises(SystemExit) as exit_:
            main(["update", "verify", str(bundle), *node, "--max-bytes", bad])
        assert exit_.value.code == 2
