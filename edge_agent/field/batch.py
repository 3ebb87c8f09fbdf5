"""Many cards at once: one provisioned card image per row of a nodes.csv
(``edge-agent image provision-batch``). Every row is checked against the base image before
the first copy; the copies are sparse, and one that fails half-way is removed."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from edge_agent.errors import EdgeAgentError, ProvisionError
from edge_agent.field.provision import Credentials, plan, provision
from edge_agent.field.sdcard import FatImage, open_target

BATCH_COLUMNS = (
    "node_id",
    "site",
    "hostname",
    "config",
    "ca",
    "cert",
    "key",
    "password_file",
    "http_token",
    "wifi_ssid",
    "wifi_psk_file",
    "trust",  # operators' public key files, separated by ";" (besides --trust, for every row)
)


@dataclasses.dataclass
class BatchRow:
    line: int
    node_id: str
    site: str | None
    config: str
    creds: Credentials


def read_batch(csv_path: str, template: str | None, trust: tuple[str, ...] = ()) -> list[BatchRow]:
    """Rows of nodes.csv (a header row naming columns of BATCH_COLUMNS; node_id required).
    Relative paths are taken from the CSV file's directory; ``trust`` goes on every card."""
    import csv

    base = Path(csv_path).resolve().parent
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            unknown = [c for c in header if c not in BATCH_COLUMNS]
            if "node_id" not in header or unknown:
                raise ProvisionError(
                    f"{csv_path}: the header must name node_id and only columns of "
                    f"{', '.join(BATCH_COLUMNS)}" + (f" (unknown: {', '.join(unknown)})" if unknown else "")
                )
            rows: list[BatchRow] = []
            seen: dict[str, int] = {}
            for rec in reader:
                line = reader.line_num
                cells = {k: (v or "").strip() for k, v in rec.items() if k is not None}

                def get(k: str, cells: dict[str, str] = cells) -> str | None:
                    return cells.get(k) or None

                def path(k: str, cells: dict[str, str] = cells) -> str | None:
                    return str(base / cells[k]) if cells.get(k) else None

                node_id = get("node_id")
                if node_id is None:
                    raise ProvisionError(f"{csv_path}:{line}: node_id is empty")
                if node_id in seen:
                    raise ProvisionError(
                        f"{csv_path}:{line}: node_id {node_id!r} already on line {seen[node_id]}"
                    )
                seen[node_id] = line
                config = path("config") or template
                if config is None:
                    raise ProvisionError(f"{csv_path}:{line}: no config column and no --config template")
                rows.append(
                    BatchRow(
                        line,
                        node_id,
                        get("site"),
                        config,
                        Credentials(
                            ca=path("ca"),
                            cert=path("cert"),
                            key=path("key"),
                            password_file=path("password_file"),
                            http_token=path("http_token"),
                            wifi_ssid=get("wifi_ssid"),
                            wifi_psk_file=path("wifi_psk_file"),
                            hostname=get("hostname"),
                            trust=trust
                            + tuple(
                                str(base / t.strip()) for t in (get("trust") or "").split(";") if t.strip()
                            ),
                        ),
                    )
                )
    except OSError as exc:
        raise ProvisionError(f"{csv_path}: cannot read: {exc.strerror or exc}") from None
    if not rows:
        raise ProvisionError(f"{csv_path}: no nodes in it")
    return rows


def _sparse_copy(src: str, dst: str, chunk: int = 1 << 20) -> None:
    """Copy a disk image, leaving runs of zeros as holes: an 8 GB image of 2 GB data costs 2 GB."""
    zero = bytes(chunk)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with open(src, "rb") as f, os.fdopen(fd, "wb", closefd=False) as out:
            while block := f.read(chunk):
                if block == zero[: len(block)]:
                    out.seek(len(block), os.SEEK_CUR)
                else:
                    out.write(block)
            out.truncate()
            out.flush()
            os.fsync(fd)
    finally:
        os.close(fd)


def provision_batch(
    base_image: str,
    csv_path: str,
    out_dir: str,
    template: str | None = None,
    progress=lambda done, total, node: None,
    trust: tuple[str, ...] = (),
) -> dict:
    """One provisioned image per row of the CSV, as OUT/NODE_ID.img. Every row is checked
    against the base image before the first copy; an image that fails half-way is removed."""
    import time

    rows = read_batch(csv_path, template, trust)
    base = open_target(base_image)
    if not isinstance(base, FatImage):
        raise ProvisionError(f"{base_image}: provision-batch needs an image file, not a directory")
    for row in rows:  # everything checked before anything is written
        try:
            plan(base, row.config, row.creds, node_id=row.node_id, site=row.site)
        except EdgeAgentError as exc:
            raise type(exc)(f"{csv_path}:{row.line} ({row.node_id}): {exc}") from None
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProvisionError(f"{out_dir}: cannot create: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK):
        raise ProvisionError(f"{out_dir}: not writable by this user")
    existing = [r.node_id for r in rows if (out / f"{r.node_id}.img").exists()]
    if existing:
        raise ProvisionError(
            f"{out_dir}: images already there for {', '.join(existing[:5])}"
            f"{' ...' if len(existing) > 5 else ''}; nothing written"
        )
    started = time.monotonic()
    made: list[dict] = []
    for i, row in enumerate(rows):
        progress(i, len(rows), row.node_id)
        dest = out / f"{row.node_id}.img"
        try:
            _sparse_copy(base_image, str(dest))
            m = provision(str(dest), row.config, row.creds, node_id=row.node_id, site=row.site)
        except (OSError, EdgeAgentError) as exc:
            dest.unlink(missing_ok=True)
            raise ProvisionError(
                f"{row.node_id}: {getattr(exc, 'strerror', None) or exc}; "
                f"{len(made)} image(s) made before it, in {out_dir}"
            ) from None
        made.append(
            {"node_id": row.node_id, "site": row.site, "image": str(dest), "instance_id": m["instance_id"]}
        )
    progress(len(rows), len(rows), "")
    return {
        "base": base_image,
        "out": str(out),
        "images": made,
        "seconds": round(time.monotonic() - started, 1),
    }
