"""edge_agent/fleet/keys.py: key files with tight modes, a private key never printed, the trust
store; and the card's reader of public keys (edge_agent.field.provision) gives the same answers."""

from __future__ import annotations

import base64
import errno
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.cli import main
from edge_agent.errors import ProvisionError
from edge_agent.field.provision import trusted_key
from edge_agent.fleet.keys import (
    PUBLIC_TAG,
    SECRET_TAG,
    KeyFileError,
    OperatorKey,
    PublicKey,
    TrustStore,
    key_id,
    new_key_pair,
    parse_public,
    read_public,
)


def test_keys_new_writes_a_private_key_only_its_owner_reads_and_never_prints_it(tmp_path, capsys):
    old = os.umask(0)  # the modes are the code's, not the umask's
    try:
        assert main(["keys", "new", "--out", str(tmp_path / "keys"), "--name", "ops"]) == 0
    finally:
        os.umask(old)
    out, err = capsys.readouterr()
    d = tmp_path / "keys"
    secret, public = d / "ops.key", d / "ops.pub"
    assert d.stat().st_mode & 0o777 == 0o700
    assert secret.stat().st_mode & 0o777 == 0o600
    assert public.stat().st_mode & 0o777 == 0o644
    tag, seed_b64 = secret.read_text().split()
    assert tag == SECRET_TAG and len(base64.b64decode(seed_b64)) == 32
    assert seed_b64 not in out + err and seed_b64[:12] not in out + err
    pub = read_public(public)
    assert pub.comment == "ops" and pub.id in out and pub.id == key_id(pub.raw)
    assert OperatorKey.read(secret).public.raw == pub.raw
    # never over an existing key
    assert main(["keys", "new", "--out", str(d), "--name", "ops"]) == 1
    assert "exists; a key is never replaced" in capsys.readouterr().err
    assert secret.read_text().split()[1] == seed_b64


def test_two_key_pairs_differ(tmp_path):
    _, a, ida = new_key_pair(tmp_path, "a")
    _, b, idb = new_key_pair(tmp_path, "b")
    assert ida != idb and a.read_bytes() != b.read_bytes()


def test_a_private_key_others_can_read_is_refused(tmp_path):
    secret, _, _ = new_key_pair(tmp_path)
    secret.chmod(0o640)
    with pytest.raises(KeyFileError, match="chmod 600"):
        OperatorKey.read(secret)


def test_the_kinds_of_key_file_are_not_confused(tmp_path):
    secret, public, _ = new_key_pair(tmp_path)
    with pytest.raises(KeyFileError, match=r"this is a private key; give its \.pub file"):
        read_public(secret)
    public.chmod(0o600)
    with pytest.raises(KeyFileError, match="this is a public key"):
        OperatorKey.read(public)


@pytest.mark.parametrize(
    "line, said",
    [
        ("", "not an edge-agent public key"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI", "not an edge-agent public key"),
        (f"{PUBLIC_TAG} " + base64.b64encode(bytes(31)).decode(), "not 32 bytes"),
        (
            f"{PUBLIC_TAG} " + base64.b64encode(bytes(32)).decode()[:-2] + "B=",
            "not 32 bytes",
        ),  # other padding bits
        (f"{PUBLIC_TAG}  " + base64.b64encode(bytes(32)).decode(), "not 32 bytes"),
        (f"{PUBLIC_TAG} " + base64.b64encode(bytes(32)).decode() + " a\x1bb", "control characters"),
    ],
)
def test_a_damaged_public_key_is_refused_by_both_readers(line, said):
    with pytest.raises(KeyFileError, match=said):
        parse_public(line.encode(), "k.pub")
    with pytest.raises(ProvisionError, match=said):
        trusted_key(line.encode(), "k.pub")


def _valid_line(raw: bytes, comment: str) -> bytes:
    return PublicKey(raw, comment).line()


@st.composite
def key_files(draw):
    """A public key file, often valid, often with one byte changed or cut."""
    data = _valid_line(draw(st.binary(min_size=32, max_size=32)), draw(st.sampled_from(["", "ops", "ops é"])))
    how = draw(st.sampled_from(["valid", "set", "cut", "random"]))
    if how == "set":
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1 :]
    elif how == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif how == "random":
        data = draw(st.binary(max_size=120))
    return data


@given(key_files())
@settings(max_examples=500, deadline=None)
def test_the_card_reads_a_public_key_exactly_as_the_node_does(data):
    try:
        node = parse_public(data, "k.pub").id
    except KeyFileError:
        node = None
    try:
        card = trusted_key(data, "k.pub")[0]
    except ProvisionError:
        card = None
    assert node == card


def test_the_trust_store_holds_what_its_directory_holds(tmp_path):
    keys = [OperatorKey(bytes([i]) * 32) for i in range(3)]
    trust = tmp_path / "trust"
    trust.mkdir()
    for k in keys:
        (trust / f"{k.public.id}.pub").write_bytes(k.public.line())
    (trust / "README").write_text("not a key, not read\n")
    store = TrustStore.load(trust)
    assert store.ids == sorted(k.public.id for k in keys)
    message = b"DSSEv1 1 x 2 hi"
    assert store.verifies(keys[1].public.id, message, keys[1].sign(message))
    assert not store.verifies(keys[1].public.id, message, keys[2].sign(message))
    assert not store.verifies(keys[1].public.id, message, b"short")
    (trust / "bad.pub").write_text("garbage\n")
    with pytest.raises(KeyFileError, match=r"bad\.pub: not an edge-agent public key"):
        TrustStore.load(trust)
    with pytest.raises(KeyFileError, match="cannot read"):
        TrustStore.load(tmp_path / "none")


def test_keys_new_refuses_a_directory_others_may_write_and_writes_nothing(tmp_path, capsys):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert main(["keys", "new", "--out", str(shared)]) == 1
    err = capsys.readouterr().err
    assert "writable by others (mode 0777)" in err and "Traceback" not in err
    assert list(shared.iterdir()) == []


def test_keys_new_where_no_directory_can_be_made_says_so(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["keys", "new", "--out", str(tmp_path / "file" / "keys")]) == 1
    err = capsys.readouterr().err
    assert "cannot make the directory" in err and "Traceback" not in err


@pytest.mark.parametrize("fail_at", [1, 2], ids=["private key", "public key"])
def test_a_key_pair_that_cannot_be_written_leaves_no_file_behind(tmp_path, monkeypatch, fail_at):
    """A full disk while the pair is written: neither file stays, the secret's bytes wiped."""
    real, calls = os.write, [0]

    def write(fd, data):
        calls[0] += 1
        if calls[0] == fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(KeyFileError, match="cannot write the key pair: No space left on device"):
        new_key_pair(tmp_path / "k")
    monkeypatch.undo()
    assert list((tmp_path / "k").iterdir()) == []
