"""A throwaway PKI made with the openssl command line: CA, server, client, and bad certificates."""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers import require_tool


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(
        [require_tool("openssl", "the openssl package"), *args], cwd=cwd, check=True, capture_output=True
    )


def _ca(d: Path, name: str) -> None:
    _run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.pem",
        "-days",
        "30",
        "-subj",
        f"/CN=edge-agent test {name}",
        cwd=d,
    )


def _leaf(
    d: Path,
    name: str,
    ca: str,
    san: str,
    *,
    start: str | None = None,
    end: str | None = None,
    client: bool = False,
) -> None:
    _run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        f"/CN={name}",
        cwd=d,
    )
    usage = "clientAuth" if client else "serverAuth"
    (d / f"{name}.ext").write_text(
        f"subjectAltName={san}\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n"
    )
    if start is None:
        _run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            f"{ca}.pem",
            "-CAkey",
            f"{ca}.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "30",
            "-extfile",
            f"{name}.ext",
            cwd=d,
        )
        return
    # An expired certificate needs explicit dates: `openssl ca` takes them.
    db = d / f"{ca}-db"
    db.mkdir(exist_ok=True)
    (db / "index.txt").touch()
    (db / "serial").write_text("1000\n")
    (d / f"{ca}.cnf").write_text(f"""[ca]
default_ca = ca_default
[ca_default]
database = {db}/index.txt
new_certs_dir = {db}
serial = {db}/serial
default_md = sha256
policy = policy_any
[policy_any]
commonName = supplied
""")
    _run(
        "ca",
        "-batch",
        "-config",
        f"{ca}.cnf",
        "-cert",
        f"{ca}.pem",
        "-keyfile",
        f"{ca}.key",
        "-in",
        f"{name}.csr",
        "-out",
        f"{name}.pem",
        "-startdate",
        start,
        "-enddate",
        end,
        "-extfile",
        f"{name}.ext",
        "-notext",
        cwd=d,
    )


def make_pki(d: Path) -> Path:
    """ca, other-ca; server (127.0.0.1), wrong-host, expired; client, other-client (other-ca). Each as NAME.pem / NAME.key."""
    d.mkdir(parents=True, exist_ok=True)
    _ca(d, "ca")
    _ca(d, "other-ca")
    _leaf(d, "server", "ca", "IP:127.0.0.1,DNS:localhost")
    _leaf(d, "wrong-host", "ca", "DNS:broker.elsewhere.example")
    _leaf(d, "expired", "ca", "IP:127.0.0.1", start="20200101000000Z", end="20200201000000Z")
    _leaf(d, "client", "ca", "DNS:up-node", client=True)
    _leaf(d, "other-client", "other-ca", "DNS:up-node", client=True)
    return d
