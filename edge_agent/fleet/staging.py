"""Update bundles, the node's side: read one into a fresh staging folder, and trust nothing in it
until it is all verified.

The order, each step before the next:

1. the bundle file: a regular file of at most ``Limits.max_bundle`` bytes;
2. its first member, ``manifest.dsse.json``: verified as a signed object of kind "update"
   (signature by a trusted key, then target, expiry and counter: edge_agent.fleet.signed);
   only then is anything in it read: version, platform, the files, their sizes and hashes;
3. every other member, read header by header with the stdlib's own header parser and no
   extraction code: a plain file (no link, device, directory, fifo, pax or GNU header), a flat
   name the manifest lists once, of the manifest's size; streamed into the staging folder
   (created here, 0700; files made with O_EXCL|O_NOFOLLOW) while it is hashed; a hash that
   differs ends the reading;
4. nothing missing, nothing after the end of the archive.

Memory stays at one 64 KiB chunk and the manifest; time is one pass over the file. Nothing is
written outside the staging folder, and a refused bundle's folder is removed. The counter is
not recorded here: ``accept`` does that, the step before an installer writes anything else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from edge_agent.errors import EdgeAgentError
from edge_agent.fleet import signed
from edge_agent.fleet.bundle import FILE_NAME, MANIFEST_NAME, PLATFORM, VERSION, node_platform
from edge_agent.fleet.counters import CounterStore
from edge_agent.fleet.keys import TrustStore
from edge_agent.fleet.refusal import Refused

log = logging.getLogger("edge_agent.fleet")

_BLOCK = 512
_CHUNK = 1 << 16
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_KINDS_OF_MEMBER = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.DIRTYPE: "a directory",
    tarfile.FIFOTYPE: "a fifo",
    tarfile.XHDTYPE: "a pax header",
    tarfile.XGLTYPE: "a pax global header",
    tarfile.GNUTYPE_LONGNAME: "a GNU long name",
    tarfile.GNUTYPE_LONGLINK: "a GNU long link",
    tarfile.GNUTYPE_SPARSE: "a GNU sparse file",
}


class StagingError(EdgeAgentError, OSError):
    """The node's own side failed (no staging folder, say): not the bundle's fault."""


@dataclasses.dataclass(frozen=True)
class Limits:
    max_bundle: int = 256 * 1024 * 1024  # bytes of the bundle, and of its files together
    max_files: int = 256
    max_manifest: int = signed.MAX_ENVELOPE

    @property
    def max_archive(self) -> int:
        """Bytes of the bundle file: the files, the manifest, a header and padding each, the end."""
        return self.max_bundle + self.max_manifest + (self.max_files + 1) * 2 * _BLOCK + 20 * _BLOCK


@dataclasses.dataclass(frozen=True)
class StagedBundle:
    """A bundle whose manifest and every file verified; its files are in ``directory``."""

    directory: Path
    manifest: signed.Verified
    version: str
    platform: str
    files: tuple[tuple[str, str, int], ...]  # (name, SHA-256 hex, bytes)
    seconds: float  # to verify and stage it, on the monotonic clock


def _body(body: Any, limits: Limits) -> tuple[str, str, dict[str, tuple[str, int]]]:
    if not isinstance(body, dict) or set(body) != {"files", "platform", "version"}:
        raise Refused("malformed", "manifest: expected exactly files, platform and version")
    version, plat, files = body["version"], body["platform"], body["files"]
    if not (isinstance(version, str) and VERSION.match(version)):
        raise Refused("malformed", "manifest: version is not a release version")
    if not (isinstance(plat, str) and PLATFORM.match(plat)):
        raise Refused("malformed", "manifest: platform is not such as cp311-linux_aarch64")
    if not isinstance(files, list) or not files:
        raise Refused("malformed", "manifest: files is not a non-empty list")
    if len(files) > limits.max_files:
        raise Refused("oversize", f"{len(files)} files, more than the {limits.max_files} allowed")
    out: dict[str, tuple[str, int]] = {}
    for i, f in enumerate(files):
        ok = isinstance(f, dict) and set(f) == {"name", "sha256", "size"}
        ok = ok and isinstance(f["name"], str) and bool(FILE_NAME.match(f["name"]))
        ok = ok and isinstance(f["sha256"], str) and bool(_HEX64.match(f["sha256"]))
        ok = ok and isinstance(f["size"], int) and not isinstance(f["size"], bool) and f["size"] >= 0
        if not ok:
            raise Refused("malformed", f"manifest: files[{i}] is not a name (a .whl), sha256 and size")
        if f["name"] in out:
            raise Refused("malformed", f"manifest: {f['name']} listed twice")
        out[f["name"]] = (f["sha256"], f["size"])
    total = sum(size for _, size in out.values())
    if total > limits.max_bundle:
        raise Refused("oversize", f"files of {total:,} bytes, more than the {limits.max_bundle:,} allowed")
    return version, plat, out


class _Members:
    """The members of an uncompressed tar, one header at a time, read from ``f`` in bounded steps."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f

    def _exactly(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise Refused("malformed", "the bundle ends in the middle of a member (truncated)")
        return data

    def header(self) -> tarfile.TarInfo | None:
        """The next member's header; None at the end (and only zeros may follow it)."""
        buf = self.f.read(_BLOCK)
        if not buf:
            raise Refused("malformed", "the archive has no end (truncated)")
        if buf == bytes(_BLOCK):
            while chunk := self.f.read(_CHUNK):
                if chunk.count(0) != len(chunk):
                    raise Refused("malformed", "bytes after the end of the archive")
            return None
        if len(buf) != _BLOCK:
            raise Refused("malformed", "the bundle ends in the middle of a header (truncated)")
        try:
            return tarfile.TarInfo.frombuf(buf, "utf-8", "strict")
        except (tarfile.HeaderError, UnicodeDecodeError, ValueError) as exc:
            raise Refused("malformed", f"a damaged tar header: {exc or type(exc).__name__}") from None

    def chunks(self, size: int):
        """The member's ``size`` bytes in chunks, then past its padding."""
        left = size
        while left:
            chunk = self._exactly(min(left, _CHUNK))
            left -= len(chunk)
            yield chunk
        self._exactly(-size % _BLOCK)


def _plain(info: tarfile.TarInfo) -> None:
    if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        what = _KINDS_OF_MEMBER.get(info.type, f"a member of type {info.type!r}")
        raise Refused("unsafe_member", f"{info.name!r} is {what}, not a plain file")
    if not FILE_NAME.match(info.name) and info.name != MANIFEST_NAME:
        raise Refused("unsafe_member", f"{info.name!r}: not a flat file name (no '/', no '..')")


def _write(directory: Path, name: str, chunks, sha256: str) -> None:
    fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    digest = hashlib.sha256()
    try:
        for chunk in chunks:
            digest.update(chunk)
            os.write(fd, chunk)
        if digest.hexdigest() != sha256:
            raise Refused("corrupt_file", f"{name}: its SHA-256 is not the manifest's")
        os.fsync(fd)
    finally:
        os.close(fd)


def stage(
    bundle: str | os.PathLike,
    staging_root: str | os.PathLike,
    *,
    trust: TrustStore,
    audience: signed.Audience,
    counters: CounterStore,
    platform: str | None = None,
    limits: Limits = Limits(),
    now: float | None = None,
) -> StagedBundle:
    """Verify ``bundle`` into a new folder under ``staging_root`` (made 0700 when missing): the
    StagedBundle, or Refused (logged as ``event=bundle_refused``) with nothing left behind."""
    t0 = time.monotonic()
    plat = platform or node_platform()
    try:
        f = open(bundle, "rb")  # closed in the finally below
    except OSError as exc:
        raise Refused("malformed", f"{bundle}: cannot read: {exc.strerror or exc}") from None
    directory: Path | None = None
    try:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise Refused("malformed", f"{bundle}: not a regular file")
        if st.st_size > limits.max_archive:
            raise Refused("oversize", f"{st.st_size:,} bytes, more than the {limits.max_archive:,} allowed")
        try:
            Path(staging_root).mkdir(mode=0o700, parents=True, exist_ok=True)
            directory = Path(tempfile.mkdtemp(prefix="bundle-", dir=staging_root))
        except OSError as exc:
            raise StagingError(
                f"{staging_root}: cannot make a staging folder: {exc.strerror or exc}"
            ) from None
        members = _Members(f)
        first = members.header()
        if (
            first is None
            or first.name != MANIFEST_NAME
            or first.type not in (tarfile.REGTYPE, tarfile.AREGTYPE)
        ):
            raise Refused("malformed", f"the first member is not {MANIFEST_NAME}")
        if first.size > limits.max_manifest:
            raise Refused(
                "oversize", f"a manifest of {first.size:,} bytes, more than {limits.max_manifest:,}"
            )
        envelope = b"".join(members.chunks(first.size))
        manifest = signed.verify(
            envelope, kind="update", trust=trust, audience=audience, counters=counters, now=now
        )
        version, bundle_plat, files = _body(manifest.body, limits)  # trusted from here on
        if bundle_plat != plat:
            raise Refused("wrong_platform", f"a bundle for {bundle_plat}, this node is {plat}")
        seen: set[str] = set()
        while (info := members.header()) is not None:
            _plain(info)
            if info.name not in files or info.name in seen:
                raise Refused("unexpected_member", f"{info.name!r} is not in the manifest, or is there twice")
            sha256, size = files[info.name]
            if info.size != size:
                raise Refused("corrupt_file", f"{info.name}: {info.size:,} bytes, the manifest says {size:,}")
            seen.add(info.name)
            _write(directory, info.name, members.chunks(size), sha256)
        missing = sorted(set(files) - seen)
        if missing:
            raise Refused("missing_file", f"not in the bundle: {', '.join(missing)}")
        _write(directory, MANIFEST_NAME, [envelope], hashlib.sha256(envelope).hexdigest())
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except Refused as exc:
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
        log.warning("event=bundle_refused bundle=%s reason=%s detail=%r", bundle, exc.reason, exc.detail)
        raise
    except BaseException:
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    finally:
        f.close()
    staged = StagedBundle(
        directory,
        manifest,
        version,
        bundle_plat,
        tuple((n, files[n][0], files[n][1]) for n in sorted(files)),
        time.monotonic() - t0,
    )
    log.info(
        "event=bundle_verified bundle=%s version=%s platform=%s files=%d key=%s counter=%d seconds=%.3f",
        bundle,
        version,
        bundle_plat,
        len(files),
        manifest.key_id,
        manifest.counter,
        staged.seconds,
    )
    return staged


def accept(staged: StagedBundle, counters: CounterStore) -> None:
    """Record the bundle's counter (durably): the step after staging and before an installer
    writes anything outside it. From here on the bundle is never accepted again."""
    counters.record("update", staged.manifest.counter, staged.manifest.digest)
    log.info(
        "event=signed_accepted kind=update counter=%d key=%s", staged.manifest.counter, staged.manifest.key_id
    )


def manifest_digest(bundle: str | os.PathLike) -> str | None:
    """The SHA-256 of a bundle's manifest bytes, unverified (None if there is none to read):
    whether a bundle is the one an interrupted install already accepted."""
    try:
        with open(bundle, "rb") as f:
            members = _Members(f)
            first = members.header()
            if first is None or first.name != MANIFEST_NAME or first.size > signed.MAX_ENVELOPE:
                return None
            return hashlib.sha256(b"".join(members.chunks(first.size))).hexdigest()
    except (OSError, Refused):
        return None


def discard(staged: StagedBundle) -> None:
    shutil.rmtree(staged.directory, ignore_errors=True)
