"""At least once in, exactly once stored: a worker killed with SIGKILL in the middle of a stream
and restarted under its slot, and a database that goes away, lose nothing and store nothing
twice. Counted against what was published (rows compared with wire.decode of the payloads)."""

from __future__ import annotations

import threading
import time

import pytest
from helpers import wait_for_log
from ingest_helpers import Ingest, Publisher, count, expected_rows, payload, stored_rows, wait_for

pytestmark = pytest.mark.broker


def stream_of(nodes: int, per_node: int) -> list[bytes]:
    return [payload(f"lamp-{n:04d}", "air", seq, n=5) for seq in range(per_node) for n in range(nodes)]


class PacedPublisher(threading.Thread):
    """Publishes the payloads one by one, a little apart, so a kill falls in the middle; each
    must be acknowledged by the broker before the test counts."""

    def __init__(self, url: str, payloads: list[bytes], pause: float = 0.002) -> None:
        super().__init__(daemon=True)
        self.pub = Publisher(url, "test-paced")
        self.payloads, self.pause = payloads, pause
        self.infos: list = []

    def run(self) -> None:
        for p in self.payloads:
            self.infos.append(self.pub.data(p, wait=False))
            time.sleep(self.pause)

    def finish(self) -> None:
        self.join(timeout=120)
        for info in self.infos:
            info.wait_for_publish(timeout=60)
            assert info.is_published()
        self.pub.close()


def test_a_worker_killed_mid_stream_and_restarted_loses_and_duplicates_nothing(broker, pg_url, tmp_path):
    workers = Ingest(broker.url, pg_url, tmp_path)
    try:
        w0, _ = workers.start(0)
        w1, _ = workers.start(1)  # the other member of the group goes on meanwhile
        sent = stream_of(20, 100)
        pub = PacedPublisher(broker.url, sent)
        pub.start()
        wait_for(pg_url, "SELECT count(*) FROM batches", lambda r: r[0][0] >= len(sent) // 5, procs=[w0, w1])
        workers.kill(w0)
        at_kill = count(pg_url, "SELECT count(*) FROM batches")
        assert at_kill < len(sent), "the stream ended before the kill: nothing was tested"
        pub.finish()  # the broker holds every batch; slot 0's share waits in its session
        w0, _ = workers.start(0)
        wait_for(
            pg_url,
            "SELECT count(*) FROM batches",
            lambda r: r[0][0] == len(sent),
            timeout=180,
            procs=[w0, w1],
        )
        assert stored_rows(pg_url) == expected_rows(sent)  # every sample once
        assert count(pg_url, "SELECT count(*) FROM batch_gaps") == 0
        assert count(pg_url, "SELECT count(*) FROM dead_letters") == 0
        # the broker sent again what the killed worker had not acknowledged: counted, not stored
        assert count(pg_url, "SELECT sum(received_count) FROM batches") >= len(sent)
    finally:
        workers.stop_all()


def test_a_database_down_holds_the_acknowledgements_until_it_is_back(broker, own_postgres, tmp_path):
    url = own_postgres.createdb("ingest")
    workers = Ingest(broker.url, url, tmp_path)
    pub = Publisher(broker.url)
    try:
        worker, log = workers.start(0)
        sent = [payload("lamp-0001", "air", seq) for seq in range(10)]
        for p in sent:
            pub.data(p)
        wait_for(url, "SELECT count(*) FROM batches", lambda r: r[0][0] == 10, procs=[worker])

        # down while batches come: the worker waits, reconnects by itself and writes them
        own_postgres.stop()
        more = [payload("lamp-0001", "air", seq) for seq in range(10, 30)]
        for p in more:
            pub.data(p)
        wait_for_log(worker, log, lambda t: "event=db_unavailable" in t, timeout=60)
        own_postgres.start()
        wait_for(url, "SELECT count(*) FROM batches", lambda r: r[0][0] == 30, timeout=120, procs=[worker])
        sent += more

        # down again, and the worker killed meanwhile: what it held was never acknowledged,
        # so the broker gives it to the restarted slot
        before = log.read_text().count("event=db_unavailable")
        own_postgres.stop()
        last = [payload("lamp-0001", "air", seq) for seq in range(30, 45)]
        for p in last:
            pub.data(p)
        wait_for_log(worker, log, lambda t: t.count("event=db_unavailable") > before, timeout=60)
        workers.kill(worker)
        own_postgres.start()
        worker, _ = workers.start(0)
        wait_for(url, "SELECT count(*) FROM batches", lambda r: r[0][0] == 45, timeout=120, procs=[worker])
        sent += last
        assert stored_rows(url) == expected_rows(sent)
        assert count(url, "SELECT count(*) FROM batch_gaps") == 0
    finally:
        pub.close()
        workers.stop_all()
