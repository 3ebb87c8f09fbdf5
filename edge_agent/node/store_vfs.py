"""How the agent's connections open the queue: SQLite's ``unix-excl`` VFS.

In WAL mode SQLite keeps the WAL's index in a ``-shm`` file beside the queue, mapped into
every connection's memory and written at every commit (its header, and the hash entries
of each frame). On the card that is a file the kernel writes back every time its pages
have been dirty for ``dirty_expire_centisecs``: a node at 10 s seals paid for it about as
much as for the WAL itself (bench/bench_writes.py). ``unix-excl`` keeps that index in
the process's heap instead, shared by the connections of the one process, and takes an
exclusive lock on the file for as long as one is open: no other process can read or
write the queue meanwhile (a second agent on the same state directory is refused at its
start: store_file.open_queue), and a crash leaves no ``-shm`` to go stale or be truncated
under a running agent. Every connection of the agent to the live queue must use it (one
of another VFS in the same process would keep an index of its own and not see the
other's commits), so they all take their URI from here.
"""

from __future__ import annotations

import urllib.parse

VFS = "unix-excl"


def uri(path: str, *, readonly: bool = False) -> str:
    """The URI of the queue at ``path`` for sqlite3.connect(..., uri=True)."""
    return f"file:{urllib.parse.quote(path)}?vfs={VFS}" + ("&mode=ro" if readonly else "")
