"""catena.Client and AsyncClient against real processes, through member kills."""

import asyncio
import threading
import time

import pytest

import catena
from catena.client import AsyncClient, ResponseError, Unavailable

from conftest import free_port, wait_until


def test_client_api_roundtrip(cluster):
    cluster.start(3)
    with catena.Client(cluster.coordinator) as c:
        assert c.set("k", "v") is True
        assert c.get("k") == b"v"
        assert c.set("k", "w", nx=True) is None and c.get("k") == b"v"
        assert c.set("gone", "x", px=60_000) is True
        assert c.incr("n") == 1 and c.incr("n", 41) == 42
        assert c.mset({"a": 1, "b": b"2"}) is True
        assert c.mget(["a", "b", "missing"]) == [b"1", b"2", None]
        assert c.exists("a", "missing") == 1
        assert c.delete("a", "b", "missing") == 2
        p = c.pipeline()
        p.set("p", 10).incr("p").get("p")
        assert p.execute() == [b"OK", 11, b"11"]
        with pytest.raises(ResponseError):
            c.incr("k")
        with pytest.raises(TypeError):
            c.set("k", 1.5)


def test_async_client_concurrent_incr_counts_exactly(cluster):
    cluster.start(3)

    async def main():
        async with AsyncClient(cluster.coordinator) as c:
            await asyncio.gather(*(c.incr("counter") for _ in range(300)))
            return await c.get("counter")

    assert asyncio.run(main()) == b"300"


def test_unreachable_coordinators_fail_fast_naming_them():
    ports = [free_port(), free_port()]
    spec = ",".join(f"127.0.0.1:{p}" for p in ports)
    started = time.monotonic()
    with pytest.raises(Unavailable) as info:
        catena.Client(spec, timeout=5).get("k")
    assert time.monotonic() - started < 3
    assert all(str(p) in str(info.value) for p in ports)


@pytest.mark.parametrize("victim", ["head", "middle", "tail"])
def test_writes_through_a_member_kill_surface_no_error_and_apply_once(cluster, victim):
    members = cluster.start(3)
    index = {"head": 0, "middle": 1, "tail": 2}[victim]
    acked, errors, stop = [], [], threading.Event()

    def writer():
        with catena.Client(cluster.coordinator, timeout=10) as c:
            while not stop.is_set():
                try:
                    acked.append(c.incr("hits"))
                except Exception as exc:  # any exception surfacing to the caller fails the test
                    errors.append(exc)
                    return

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_until(lambda: len(acked) >= 50, 30, "writes before the kill")
        cluster.kill9(members[index])
        before = len(acked)
        wait_until(lambda: len(acked) >= before + 50 or errors, 30, "writes after the kill")
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors
    # Every INCR applied exactly once: the replies are 1..n with no gap and no repeat, and the
    # stored counter equals the number of acknowledged calls.
    assert acked == list(range(1, len(acked) + 1))
    with catena.Client(cluster.coordinator) as c:
        assert c.get("hits") == str(len(acked)).encode()
