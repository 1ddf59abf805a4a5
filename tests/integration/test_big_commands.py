"""Big legal commands on a real chain: KEYS over 200k keys runs in slices (other clients are
answered meanwhile, the coordinator removes nobody), SCAN walks everything."""

from __future__ import annotations

import threading
import time

N = 200_000


def _load(client, n: int, prefix: str) -> set[bytes]:
    pipe = client.pipeline(transaction=False)
    for first in range(0, n, 1000):
        pipe.mset({f"{prefix}{i}": "v" for i in range(first, min(first + 1000, n))})
        if len(pipe) == 10:
            pipe.execute()
    pipe.execute()
    return {f"{prefix}{i}".encode() for i in range(n)}


class _Pinger(threading.Thread):
    """GETs in a loop on its own connection, recording when each reply came."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.client, self.replies, self.stop = client, [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.client.get("big:k1")
            self.replies.append(time.monotonic())


def test_keys_on_200k_keys_lets_others_be_served_and_removes_nobody(shared_chain3):
    cluster, members = shared_chain3
    head, middle, tail = (cluster.client(a) for a in members)
    loaded = _load(head, N, "big:k")
    epoch = cluster.coordinator_status()["epoch"]
    for addr, c in ((members[1], middle), (members[2], tail)):
        pinger = _Pinger(cluster.client(addr))
        pinger.start()
        try:
            for _ in range(3):
                sent = time.monotonic()
                keys = c.keys("big:k*")
                done = time.monotonic()
                assert set(keys) == loaded
                # Other clients of the same member are answered while the walk runs (a KEYS
                # computed in one turn answers nobody else until it is done).
                during = [t for t in pinger.replies if sent + (done - sent) * 0.2 < t < done - (done - sent) * 0.2]
                assert len(during) >= 5, (len(during), done - sent)
        finally:
            pinger.stop.set()
            pinger.join()
    assert cluster.chain() == members
    assert cluster.coordinator_status()["epoch"] == epoch


def test_keys_and_scan_under_writes_return_keys_present_throughout(shared_chain3):
    """At the head, writes keep other keys dirty: KEYS waits for (or asks the tail about) what
    it may not answer; SCAN's cursor survives the inserts and deletes."""
    cluster, members = shared_chain3
    head = cluster.client(members[0])
    stable = _load(head, 20_000, "walk:s")
    _load(head, 5_000, "walk:d")
    stop = threading.Event()

    def churn():
        writer, i = cluster.client(members[0]), 0
        while not stop.is_set():
            writer.delete(f"walk:d{i % 5000}")
            writer.set(f"walk:n{i}", "v")
            i += 1

    t = threading.Thread(target=churn, daemon=True)
    t.start()
    try:
        for addr in members:
            c = cluster.client(addr)
            assert stable <= set(c.keys("walk:*"))
            seen, cursor = set(), 0
            while True:
                cursor, page = c.scan(cursor, match="walk:*", count=500)
                seen.update(page)
                if cursor == 0:
                    break
            assert stable <= seen
    finally:
        stop.set()
        t.join()
