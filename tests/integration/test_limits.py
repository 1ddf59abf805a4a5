"""Limits at real processes, as Redis's: a client that does not read its replies is
disconnected, not the member; maxclients refuses data clients but leaves room for catena's own
connections (members and coordinators); active expiry keeps up with 100,000 keys due at once;
INFO shows the longest event-loop turn."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import redis

from catena.resp.client import call
from conftest import HOST, Cluster, Proc, addr_of, as_dict, catena_argv, free_port, port_of, wait_until

CLOSE_TIMEOUT_S = 30.0
VALUE = b"v" * (1 << 20)


def _info(cluster: Cluster, addr: str) -> dict:
    return cluster.client(addr).info()


@pytest.fixture
def limited(request, tmp_path):
    """A cluster whose members take the test's parameter as extra flags."""
    c = Cluster(tmp_path, member_args=request.param)
    try:
        yield c
    finally:
        c.close()


def _member_status(addr: str) -> dict:
    """MEMBER.STATUS as catena's own tools ask it (catena status): the first command on the
    connection is an internal one (redis-py would start with CLIENT SETINFO)."""
    reply = asyncio.run(call(addr, b"MEMBER.STATUS", timeout=10))
    return as_dict(reply)


def _raw(addr: str) -> socket.socket:
    return socket.create_connection((HOST, port_of(addr)), timeout=CLOSE_TIMEOUT_S)


def _read_until_closed(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk


@pytest.mark.parametrize("limited", [("--client-output-buffer-limit", "8mb 2mb 10")], indirect=True)
def test_a_client_that_does_not_read_is_disconnected_and_the_member_stays_in_the_chain(limited):
    members = limited.start(3)
    tail = members[-1]
    epoch = limited.coordinator_status()["epoch"]
    assert limited.client(members[0]).set("bigkey", VALUE) is True
    rss_before = int(_info(limited, tail)["used_memory_rss"])
    hog = _raw(tail)
    hog.sendall(b"*2\r\n$3\r\nGET\r\n$6\r\nbigkey\r\n" * 2000)  # 2 GB of replies if nobody stopped it
    wait_until(lambda: "client-output-buffer-limit" in limited.procs[tail].log_tail(200), CLOSE_TIMEOUT_S,
               "the member to disconnect the client that does not read")
    got = _read_until_closed(hog)  # what the kernel held, then the end of the connection
    hog.close()
    assert len(got) < 64 * len(VALUE), len(got)
    assert "8388608" in limited.procs[tail].log_tail(200)  # the log names the limit
    # The member serves everyone else, kept its memory, and is still in the chain.
    assert limited.client(tail).get("bigkey") == VALUE
    assert limited.client(members[0]).set("after", b"1") is True
    assert limited.client(tail).get("after") == b"1"
    assert int(_info(limited, tail)["used_memory_rss"]) < rss_before + 256 * (1 << 20)
    assert limited.chain() == members
    assert limited.coordinator_status()["epoch"] == epoch


@pytest.mark.parametrize("limited", [("--maxclients", "4")], indirect=True)
def test_maxclients_refuses_data_clients_but_a_new_member_still_links_in(limited):
    (head,) = limited.start(1)
    data = []
    refused = None
    for _ in range(10):  # the coordinator's probe connection counts too, as in Redis
        sock = _raw(head)
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        reply = sock.recv(100)
        if reply == b"+PONG\r\n":
            data.append(sock)
            continue
        refused = reply + _read_until_closed(sock)
        sock.close()
        break
    try:
        assert refused == b"-ERR max number of clients reached\r\n"
        assert 1 <= len(data) <= 4
        with pytest.raises(redis.ConnectionError, match="max number of clients reached"):
            redis.Redis(host=HOST, port=port_of(head), socket_timeout=10).ping()
        # catena's own connections use the headroom: status, the coordinator's probes and pushes,
        # and the link of a member that joins behind the full one.
        assert _member_status(head)["role"] == "head+tail"
        second = limited.start_member()
        limited.add(second)
        wait_until(lambda: limited.chain() == [head, second], 30, "the new member to be the tail")
        assert _member_status(head)["role"] == "head"
        data[0].sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n")
        assert data[0].recv(100) == b"+OK\r\n"
        wait_until(lambda: limited.client(second).get("k") == b"v", 30, "the write to reach the new tail")
    finally:
        for sock in data:
            sock.close()
    # Once the data clients leave, new ones are admitted again.
    wait_until(lambda: redis.Redis(host=HOST, port=port_of(head), socket_timeout=10).ping(), 30,
               "a data client to be admitted again")


def test_info_reports_the_longest_loop_turn(cluster):
    (member,) = cluster.start(1)
    info = cluster.client(member).info()
    for field in ("catena_longest_loop_turn_ms", "catena_longest_loop_turn_recent_ms", "maxclients"):
        assert field in info, info
    assert info["maxclients"] == 10_000
    c = cluster.client(member)
    p = c.pipeline(transaction=False)
    for i in range(20_000):
        p.set(f"k{i}", i)
    p.execute()
    start = time.monotonic()
    c.keys("*")  # one turn over every key: it shows in the longest turn
    took_ms = (time.monotonic() - start) * 1000
    longest = float(c.info()["catena_longest_loop_turn_ms"])
    assert longest > 0.0 and longest <= took_ms + 1000, (longest, took_ms)


def test_the_coordinator_takes_maxclients_too(tmp_path):
    port = free_port()
    addr = addr_of(port)
    proc = Proc("coordinator", catena_argv("coordinator", "--listen", addr, "--data-dir", str(tmp_path / "c"),
                                           "--maxclients", "1"), tmp_path / "coordinator.log")
    try:
        admin = wait_until(lambda: _connected(port), 30, "the coordinator to listen")
        with pytest.raises(redis.ConnectionError, match="max number of clients reached"):
            redis.Redis(host=HOST, port=port, socket_timeout=10).execute_command("MASTER.GET_CHAIN")
        # catena's own calls (a member's registration, MASTER.STATUS) still get through
        assert b"epoch" in asyncio.run(call(addr, b"MASTER.STATUS", timeout=10))
        assert admin.execute_command("MASTER.GET_CHAIN") == []
        admin.close()
    finally:
        proc.stop()


def _connected(port: int) -> redis.Redis:
    c = redis.Redis(host=HOST, port=port, socket_timeout=10)
    c.ping()
    return c


def test_100k_keys_expiring_together_are_purged_everywhere_without_stalling_the_chain(cluster):
    members = cluster.start(3)
    epoch = cluster.coordinator_status()["epoch"]
    head = cluster.client(members[0])
    ttl_s = 20  # loading takes several seconds on a busy machine: every key gets one deadline
    deadline, pxat = time.monotonic() + ttl_s, int((time.time() + ttl_s) * 1000)
    for start in range(0, 100_000, 10_000):
        p = head.pipeline(transaction=False)
        for i in range(start, start + 10_000):
            p.set(f"ttl:{i}", b"v", pxat=pxat)
        assert all(p.execute())
    assert time.monotonic() < deadline, "loading took longer than the TTL: raise ttl_s"
    assert {cluster.status(a)["keys"] for a in members} == {100_000}
    loading = _longest_turn_ms(cluster, members)
    wait_until(lambda: all(cluster.status(a)["keys"] == 0 for a in members), 60,
               "every member to purge the expired keys")
    took = time.monotonic() - deadline
    print(f"100,000 keys purged on every member {took:.2f} s after their deadline")
    assert cluster.chain() == members and cluster.coordinator_status()["epoch"] == epoch  # nobody was removed
    print(f"longest loop turn on any member: {loading:.0f} ms while loading, "
          f"{_longest_turn_ms(cluster, members):.0f} ms after the purge")
    cluster.wait_converged(members)


def _longest_turn_ms(cluster: Cluster, members: list[str]) -> float:
    return max(float(cluster.client(a).info()["catena_longest_loop_turn_ms"]) for a in members)
