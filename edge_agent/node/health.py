"""The health message: published on ``{prefix}/{node_id}/health`` right after start and then
every ``health_interval``. Its fields are specified in docs/wire-format.md.

The sampler contributes what it owns (sensor states and error counts); the
uplink thread adds its own state, the store's depth, and the system's facts,
and publishes. Neither reads the other's state.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from edge_agent import __version__, dsp
from edge_agent.config import AgentConfig
from edge_agent.node.store import BatchStore
from edge_agent.node.sysinfo import SystemProbe, disk_space

# What the launcher runs this agent as (edge_agent.fleet.release.running: the release, its
# status, the newest trial's outcome), read at each message; None outside a launcher.
ReleaseFacts = Callable[[], dict | None]


def no_release() -> dict | None:
    return None


class HealthReport:
    """Builds health messages; keeps the baseline for per-hour disk-write rates."""

    def __init__(
        self, cfg: AgentConfig, probe: SystemProbe | None = None, release: ReleaseFacts | None = None
    ) -> None:
        self.cfg = cfg
        self.release = release or no_release
        self.probe = probe or SystemProbe()
        self.started_mono = time.monotonic()
        io = self.probe.process_io() or {}
        self._io_base = (self.started_mono, io.get("write_bytes"), io.get("syscw"))

    def _disk_writes(self, now: float, durable_commits: int) -> dict:
        """Our own writes: block-layer bytes and write calls (/proc/self/io), and the
        fsync'ed commits of the queue (each costs at least one fsync of the WAL)."""
        io = self.probe.process_io()
        t0, wb0, sc0 = self._io_base
        hours = max(now - t0, 1.0) / 3600.0
        out: dict = {
            "durable_commits": durable_commits,
            "durable_commits_per_hour": round(durable_commits / hours),
        }
        if io is not None and wb0 is not None:
            out.update(
                {
                    "write_bytes": io.get("write_bytes", 0) - wb0,
                    "write_bytes_per_hour": round((io.get("write_bytes", 0) - wb0) / hours),
                    "write_syscalls_per_hour": round((io.get("syscw", 0) - (sc0 or 0)) / hours),
                }
            )
        return out

    def build(self, *, sampler: dict, uplink: dict, store: BatchStore | None) -> dict:
        """The message; ``store`` None: the queue is not open (a full disk at the start,
        store_pending), its figures are None."""
        now = time.monotonic()
        p = self.probe
        batches, size = store.depth() if store is not None else (None, None)
        oldest = store.oldest_sealed() if store is not None else None
        clock = p.clock()
        return {
            "node": self.cfg.node_id,
            "time": round(time.time(), 3),
            "version": __version__,
            "core": dsp.IMPLEMENTATION,
            "config_hash": self.cfg.config_hash,
            "release": self.release(),
            "uptime_s": round(now - self.started_mono, 1),
            "boot_id": p.boot_id(),
            "system_uptime_s": p.uptime(),
            "cpu_temp_c": p.cpu_temperature(),
            "throttled": p.throttled(),
            "load": p.load(),
            "memory": p.memory(),
            "disk": disk_space(self.cfg.state_dir),
            "disk_writes": self._disk_writes(now, sampler["durable_commits"]),
            "store": {
                "epoch": sampler["store_epoch"],  # of the batches sealed since start: 8 hex digits
                "batches": batches,
                "bytes": size,
                "max_bytes": self.cfg.store.max_size,
                "oldest_age_s": round(time.time() - oldest, 1) if oldest is not None else None,
                "losses": store.losses() if store is not None else {},
                "unstored_since_start": sampler["unstored"],
                "recovery": sampler["store_recovery"],
                "wal_loss": sampler["store_wal_loss"],
            },
            "uplink": uplink,
            "sensors": sampler["sensors"],
            "privacy": sampler.get("privacy", {}),  # per stream: level (and period_s, periods, dropped)
            "clock": {"synchronized": clock.synchronized, "source": clock.source},
        }
