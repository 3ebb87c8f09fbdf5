"""Update bundles, the operator's side: the wheels of one release for one platform, and a signed
manifest of them, in one uncompressed tar (ustar, flat)::

    manifest.dsse.json                       first: a signed object of kind "update"
    edge_agent-0.2.0-cp311-cp311-linux_aarch64.whl
    paho_mqtt-2.1.0-py3-none-any.whl ...     the files, in the manifest's order

The manifest's body: ``{"files":[{"name":...,"sha256":...,"size":...},...],"platform":
"cp311-linux_aarch64","version":"0.2.0"}``. A platform is the node's Python (``cp311``) and
machine (``linux_aarch64``, ``linux_armv7l``): what decides which wheels it can install. Wheels
are zip files already, so the tar is not compressed (a compressed member is also one more
thing for a node to bound). The node's side is edge_agent.fleet.staging.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform as _platform
import re
import sys
import tarfile
import time
from pathlib import Path

from edge_agent.fleet import signed
from edge_agent.fleet.keys import OperatorKey

MANIFEST_NAME = "manifest.dsse.json"
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,95}\.whl$")  # ustar: 100 bytes a name
PLATFORM = re.compile(r"^cp3[0-9]{1,2}-linux_[a-z0-9_]{1,32}$")
VERSION = re.compile(r"^[0-9][0-9A-Za-z.+!-]{0,63}$")
_CHUNK = 1 << 16


def node_platform() -> str:
    """This machine's platform, as a bundle names it (``cp311-linux_aarch64``)."""
    return f"cp{sys.version_info.major}{sys.version_info.minor}-linux_{_platform.machine().lower()}"


def _wheel_fits(name: str, plat: str) -> str | None:
    """Why a wheel named ``name`` cannot install on ``plat`` (None: it can, by its tags)."""
    parts = name[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        return "not a wheel's file name (name-version-python-abi-platform.whl)"
    py_tags, abi, plat_tags = parts[-3].split("."), parts[-2], parts[-1].split(".")
    node_py, _, machine = plat.partition("-linux_")
    if "any" not in plat_tags and not any(t.endswith("_" + machine) for t in plat_tags):
        return f"built for {parts[-1]}, not {machine}"
    node_minor = int(node_py[3:])

    def py_ok(tag: str) -> bool:
        if tag in ("py3", "py2.py3") or tag.startswith("py3"):
            return True
        if not tag.startswith("cp3") or not tag[3:].isdigit():
            return False
        return int(tag[3:]) == node_minor or (abi == "abi3" and int(tag[3:]) <= node_minor)

    if not any(py_ok(t) for t in py_tags):
        return f"built for Python {parts[-3]}/{abi}, not {node_py}"
    return None


def manifest_body(wheels: list[Path], version: str, plat: str) -> dict:
    """The manifest of ``wheels``, checked as a node would find them fit (ValueError)."""
    if not VERSION.match(version):
        raise ValueError(f"--version {version!r}: a release version such as 0.2.0")
    if not PLATFORM.match(plat):
        raise ValueError(f"--platform {plat!r}: such as cp311-linux_aarch64 or cp311-linux_armv7l")
    files: list[dict] = []
    names: set[str] = set()
    for w in wheels:
        if not FILE_NAME.match(w.name):
            raise ValueError(
                f"{w}: not a wheel (.whl) with a plain file name of at most 100 bytes (a tar's limit)"
            )
        why = _wheel_fits(w.name, plat)
        if why:
            raise ValueError(f"{w}: {why}")
        if w.name in names:
            raise ValueError(f"{w.name}: given twice")
        names.add(w.name)
        digest, size = hashlib.sha256(), 0
        try:
            with open(w, "rb") as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
        except OSError as exc:
            raise ValueError(f"{w}: cannot read: {exc.strerror or exc}") from None
        files.append({"name": w.name, "sha256": digest.hexdigest(), "size": size})
    if not any(f["name"].split("-")[:2] == ["edge_agent", version] for f in files):
        raise ValueError(f"no edge_agent-{version}-*.whl among the wheels: a release carries the agent")
    return {"files": files, "platform": plat, "version": version}


def _member(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.type = size, 0o644, mtime, tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def build(
    wheels: list[str | os.PathLike],
    *,
    key: OperatorKey,
    version: str,
    platform: str,
    target: str,
    out: str | os.PathLike,
    counter: int | None = None,
    lifetime: float = 30 * 86400.0,
    issued: int | None = None,
) -> dict:
    """Write the bundle to ``out`` (a new file; never over one) and return its manifest's fields.
    ``counter`` defaults to ``issued`` (the time of signing, in seconds): it goes up from one
    bundle to the next without bookkeeping, as long as one operator's counters are all of one
    habit (an explicit small counter after a time-based one is refused by every node)."""
    paths = [Path(w) for w in wheels]
    if not paths:
        raise ValueError("no wheels: a bundle carries at least the agent's")
    body = manifest_body(paths, version, platform)
    issued = int(time.time()) if issued is None else issued
    counter = issued if counter is None else counter
    envelope = signed.sign(
        "update",
        body,
        key=key,
        target=target,
        counter=counter,
        expires=issued + int(lifetime),
        issued=issued,
    )
    dest = Path(out)
    try:  # never over an existing file; a half-written bundle does not stay
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        raise ValueError(f"{dest}: exists; a bundle is never written over") from None
    except OSError as exc:
        raise ValueError(f"{dest}: cannot write: {exc.strerror or exc}") from None
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar,
        ):
            tar.addfile(_member(MANIFEST_NAME, len(envelope), issued), io.BytesIO(envelope))
            for p, f in zip(paths, body["files"]):
                with open(p, "rb") as src:
                    tar.addfile(_member(f["name"], f["size"], issued), src)
            tar.close()
            raw.flush()
            os.fsync(raw.fileno())
    except BaseException:
        os.unlink(dest)
        raise
    return {
        "bundle": str(dest),
        "version": version,
        "platform": platform,
        "target": target,
        "counter": counter,
        "issued": issued,
        "expires": issued + int(lifetime),
        "key_id": key.public.id,
        "files": body["files"],
        "bytes": dest.stat().st_size,
    }
