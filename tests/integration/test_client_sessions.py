"""Client sessions against real processes: keys bound to a session die with it (client killed,
session closed), survive a coordinator failover on etcd, and a client that stops pinging is
told (on_lost, SessionLost)."""

import asyncio
import sys
import textwrap
import time

import pytest
import redis

import catena
from catena.client import AsyncClient, ClientError, SessionLost

from conftest import CHAIN_TIMEOUT_S, START_TIMEOUT_S, Proc, wait_until
from etcd_helpers import etcd, join_chain, make_ha, saved_state  # noqa: F401 - fixtures

TTL_S = 2.0  # pings every 0.67 s: a stall of over 1.3 s under load would be needed to lose it

CLIENT = textwrap.dedent("""
    import sys, threading
    import catena
    c = catena.Client(sys.argv[1])
    c.open_session(ttl=float(sys.argv[2]))
    for i in range(10):
        c.set(f"s:{i}", i, session=True)
        c.set(f"plain:{i}", i)
    print("ready", c.session_id, flush=True)
    threading.Event().wait()
""")


def keys_on(cluster, addr: str, prefix: str) -> int:
    return cluster.client(addr).exists(*(f"{prefix}:{i}" for i in range(10)))


def test_session_keys_are_deleted_after_the_client_is_killed(cluster, tmp_path):
    members = cluster.start(3)
    log = tmp_path / "client.log"
    client = Proc("session-client", [sys.executable, "-c", CLIENT, cluster.coordinator, str(TTL_S)], log)
    try:
        wait_until(lambda: "ready" in log.read_text() or not client.alive, START_TIMEOUT_S, "the client's writes")
        assert client.alive, client.log_tail()
        # While it pings, its keys stay (past its TTL).
        alive_until = time.monotonic() + 1.5 * TTL_S
        while time.monotonic() < alive_until:
            assert keys_on(cluster, members[0], "s") == 10
            time.sleep(0.1)
        client.kill9()
        killed = time.monotonic()
        for addr in members:
            wait_until(lambda a=addr: keys_on(cluster, a, "s") == 0, CHAIN_TIMEOUT_S, f"session keys gone at {addr}")
        assert time.monotonic() - killed > TTL_S * 0.5  # not before its TTL ran out (last ping <= ttl/3 before the kill)
        assert all(keys_on(cluster, addr, "plain") == 10 for addr in members)
    finally:
        client.stop()


def test_a_client_that_stops_pinging_is_told_once_and_closed_sessions_delete_their_keys(cluster):
    members = cluster.start(2)
    tail = cluster.client(members[-1])

    async def main():
        lost: list[str] = []
        told = asyncio.Event()

        def on_lost(sid):
            lost.append(sid)
            told.set()

        async with AsyncClient(cluster.coordinator) as c:
            with pytest.raises(ClientError):
                await c.set("k", 1, session=True)  # no session yet
            sid = await c.open_session(ttl=1.5, on_lost=on_lost)
            assert await c.set("eph", 1, session=True) is True
            assert await c.set("lock", "me", nx=True, session=True) is True
            assert await c.set("lock", "you", nx=True, session=True) is None
            await c.set("other", "x")
            # The loop blocks (no pings go out) until the coordinator expired the session.
            wait_until(lambda: tail.exists("eph", "lock") == 0, CHAIN_TIMEOUT_S, "the expiry of the session")
            await asyncio.wait_for(told.wait(), 10)
            with pytest.raises(SessionLost):
                await c.set("eph", 2, session=True)
            assert lost == [sid] and c.session_id is None
            assert await c.get("other") == b"x"

            # A new session; closing it deletes its keys at once, before its TTL.
            sid2 = await c.open_session(ttl=30, on_lost=on_lost)
            with pytest.raises(ClientError):
                await c.open_session()  # one at a time
            await c.mset({"a": 1, "b": 2})
            for key in ("a", "b"):
                await c.set(key, 3, session=True)
            await c.close_session()
            assert await c.exists("a", "b") == 0 and lost == [sid]
            sid3 = await c.open_session(ttl=30)
            await c.set("c", 1, session=True)
            assert len({sid, sid2, sid3}) == 3
        # close() closed the session too
        assert tail.exists("c") == 0

    asyncio.run(main())
    with redis.Redis(host="127.0.0.1", port=int(cluster.coordinator.rsplit(":", 1)[1]), protocol=2) as admin:
        with pytest.raises(redis.ResponseError, match="no such session"):
            admin.execute_command("MASTER.SESSION.PING", "nope")
        with pytest.raises(redis.ResponseError, match="ttl"):
            admin.execute_command("MASTER.SESSION.OPEN", "5")


def test_a_session_survives_a_coordinator_failover_on_etcd(etcd, make_ha):  # noqa: F811
    ha = make_ha(etcd, coordinators=2)
    first = ha.coordinator
    chain = join_chain(ha, 2, discovery=etcd.url(ha.prefix))
    ttl = 3.0
    lost: list[str] = []
    with catena.Client(etcd.url(ha.prefix), timeout=10) as c:
        sid = c.open_session(ttl=ttl, on_lost=lost.append)
        for i in range(5):
            c.set(f"s:{i}", i, session=True)
        assert saved_state(ha)["sessions"][sid]["keys"] == [f"s:{i}" for i in range(5)]
        ha.kill9(first)
        ha.wait_leader(other_than=first)
        took_over = time.monotonic()
        # Past a whole TTL after the takeover, the session lives: the client pings the new leader.
        while time.monotonic() < took_over + 1.5 * ttl:
            assert not lost
            time.sleep(0.1)
        assert c.session_id == sid and not lost
        c.set("s:after", 1, session=True)  # attached by the new leader
        keys = [f"s:{i}" for i in range(5)] + ["s:after"]
        assert saved_state(ha)["sessions"][sid]["keys"] == keys
        assert c.exists(*keys) == len(keys)
        c.close_session()
        assert c.exists(*keys) == 0
        assert sid not in saved_state(ha)["sessions"]
    for addr in chain:
        assert ha.client(addr).exists(*keys) == 0
    assert not lost
