"""Bad input at a real member: malformed RESP, oversized lengths, unknown commands, passwords."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from conftest import HOST, port_of, wait_until

MAX_BULK = 64 * 1024  # --max-bulk-len of the member under test
READ_TIMEOUT_S = 15.0
CLOSE_TIMEOUT_S = 3.0  # a refused connection is closed at once; this only bounds a failing test


class Raw:
    """A plain TCP connection that speaks bytes."""

    def __init__(self, addr: str):
        self.sock = socket.create_connection((HOST, port_of(addr)), timeout=READ_TIMEOUT_S)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_until_closed(self) -> bytes:
        """Everything the server sends until it closes the connection (fails on the deadline)."""
        out = b""
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        self.sock.settimeout(CLOSE_TIMEOUT_S)
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return out
            except TimeoutError:
                break
            if not chunk:
                return out
            out += chunk
        raise AssertionError(f"the server did not close the connection; got {out!r}")

    def read_reply(self, ending: bytes = b"\r\n") -> bytes:
        out = b""
        deadline = time.monotonic() + READ_TIMEOUT_S
        while not out.endswith(ending):
            assert time.monotonic() < deadline, f"no complete reply: {out!r}"
            chunk = self.sock.recv(65536)
            assert chunk, f"connection closed after {out!r}"
            out += chunk
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def member(tmp_path_factory):
    """One member (no chain needed for these) with a small --max-bulk-len, and its process."""
    from conftest import Cluster

    c = Cluster(tmp_path_factory.mktemp("bad-input"), member_args=("--max-bulk-len", str(MAX_BULK)))
    try:
        c.start(1)
        yield c
    finally:
        c.close()


@pytest.fixture
def addr(member):
    return member.chain()[0]


@pytest.fixture
def raw(addr):
    conns = []

    def make() -> Raw:
        conns.append(Raw(addr))
        return conns[-1]

    yield make
    for c in conns:
        c.close()


def _still_serving(addr: str) -> None:
    with redis.Redis(host=HOST, port=port_of(addr), socket_timeout=READ_TIMEOUT_S) as c:
        assert c.ping() is True
        assert c.set("still-serving", b"yes") is True
        assert c.get("still-serving") == b"yes"


MALFORMED = [
    pytest.param(b"*abc\r\n$4\r\nPING\r\n", id="bad multibulk length"),
    pytest.param(b"*1\r\n$x\r\nPING\r\n", id="bad bulk length"),
    pytest.param(b"*2\r\n$3\r\nGET\r\n$-5\r\n", id="negative bulk length"),
    pytest.param(b"*1\r\n$2\r\nPING\r\n", id="bulk longer than announced"),
    pytest.param(b"*99999999999\r\n", id="multibulk above the argument limit"),
    pytest.param(b"*1\r\n:5\r\n", id="integer instead of bulk"),
    pytest.param(b"*2\r\n$3\r\nGET\r\n+OK\r\n", id="simple string instead of bulk"),
    pytest.param(b"*1\r\n*1\r\n$4\r\nPING\r\n", id="nested array"),
]


@pytest.mark.parametrize("payload", MALFORMED)
def test_malformed_resp_gets_protocol_error_and_closes(addr, raw, payload):
    bystander = raw()
    bystander.send(b"*1\r\n$4\r\nPING\r\n")
    assert bystander.read_reply() == b"+PONG\r\n"
    bad = raw()
    bad.send(payload)
    reply = bad.read_until_closed()
    assert reply.startswith(b"-ERR Protocol error"), reply
    assert reply.endswith(b"\r\n") and reply.count(b"\r\n") == 1, reply
    # The other connection and new ones are unaffected.
    bystander.send(b"*2\r\n$4\r\nECHO\r\n$2\r\nok\r\n")
    assert bystander.read_reply() == b"$2\r\nok\r\n"
    _still_serving(addr)


def test_commands_before_the_bad_frame_are_answered(raw):
    c = raw()
    c.send(b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*1\r\n$zz\r\n")
    reply = c.read_until_closed()
    assert reply.startswith(b"+PONG\r\n+OK\r\n-ERR Protocol error"), reply


def test_bulk_above_max_bulk_len_is_rejected_from_its_header(addr, raw):
    c = raw()
    # Only the header: the server must refuse before the payload arrives.
    c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % (MAX_BULK + 1))
    reply = c.read_until_closed()
    assert reply.startswith(b"-ERR Protocol error") and b"bulk length" in reply, reply
    # Exactly the limit is fine.
    ok = raw()
    ok.send(b"*3\r\n$3\r\nSET\r\n$5\r\nlimit\r\n$%d\r\n%s\r\n" % (MAX_BULK, b"x" * MAX_BULK))
    assert ok.read_reply() == b"+OK\r\n"
    _still_serving(addr)


def test_header_split_across_packets_is_still_checked(raw):
    c = raw()
    for part in (b"*3\r\n$3\r\nSET\r", b"\n$1\r\nk\r\n$", b"9999", b"999999", b"9\r\n"):
        c.send(part)
        time.sleep(0.01)  # separate TCP segments (pacing, not synchronisation)
    reply = c.read_until_closed()
    assert reply.startswith(b"-ERR Protocol error"), reply


def _rss(member, addr) -> int:
    info = member.client(addr).info("memory")
    return int(info["used_memory_rss"])


def test_huge_length_claims_do_not_allocate(member, addr, raw):
    """Headers claiming huge sizes, held open without payload, must not grow the process."""
    before = _rss(member, addr)
    conns = []
    for _ in range(20):
        c = raw()
        c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % MAX_BULK)  # allowed size, never sent
        conns.append(c)
    for _ in range(20):
        c = raw()
        c.send(b"*1048576\r\n")  # the largest argument count allowed, no arguments sent
        conns.append(c)
    big = raw()
    big.send(b"*1\r\n$%d\r\n" % (1 << 40))  # a terabyte
    assert big.read_until_closed().startswith(b"-ERR Protocol error")
    _still_serving(addr)
    after = _rss(member, addr)
    assert after - before < 64 * 1024 * 1024, f"RSS grew by {(after - before) >> 20} MiB"


def test_default_limit_is_512mb(cluster):
    """Without the flag, a bulk of 512 MB + 1 is refused from its header (like proto-max-bulk-len)."""
    addr = cluster.start_member()  # framing is checked before any view matters: no chain needed
    c = Raw(addr)
    try:
        c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % (512 * 1024 * 1024 + 1))
        reply = c.read_until_closed()
        assert reply.startswith(b"-ERR Protocol error"), reply
    finally:
        c.close()


def test_inline_commands(raw):
    c = raw()
    c.send(b"PING\r\n")
    assert c.read_reply() == b"+PONG\r\n"
    c.send(b"SET inline yes\r\nGET inline\r\n")
    assert c.read_reply(b"yes\r\n") == b"+OK\r\n$3\r\nyes\r\n"


def test_unknown_command_and_wrong_arity(addr):
    with redis.Redis(host=HOST, port=port_of(addr), socket_timeout=READ_TIMEOUT_S) as c:
        with pytest.raises(redis.ResponseError, match=r"^unknown command 'NOSUCHCMD', with args beginning with: 'a'"):
            c.execute_command("NOSUCHCMD", "a", "b")
        with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'get' command"):
            c.execute_command("GET")
        with pytest.raises(redis.ResponseError, match="syntax error"):
            c.execute_command("SET", "k", "v", "BOGUS")
        with pytest.raises(redis.ResponseError, match="not an integer"):
            c.execute_command("INCRBY", "k", "x")
        assert c.ping() is True  # the connection survives ordinary errors


# -- passwords --------------------------------------------------------------------------------

PASSWORD = "s3cret pass"


@pytest.fixture
def secured(make_cluster):
    """Two members started with --requirepass (not linked into a chain: see the xfail below).
    The first one gets a one-member view by hand, so it serves data commands."""
    c = make_cluster(password=PASSWORD)
    members = [c.start_member(), c.start_member()]
    with redis.Redis(host=HOST, port=port_of(members[0]), password=PASSWORD, socket_timeout=READ_TIMEOUT_S) as r:
        assert r.execute_command("MEMBER.VIEW", 0, 1, "-", members[0]) in (True, b"OK")
        wait_until(lambda: r.set("ready", b"1"), 20, "the member to serve writes")
    return c, members


def test_coordinator_manages_members_with_requirepass(make_cluster):
    """With a cluster secret (CATENA_SECRET for every process), the coordinator's pushes and
    probes and the members' peer links authenticate as the internal user; clients still need
    the password."""
    import os

    cluster = make_cluster(password=PASSWORD, env={**os.environ, "CATENA_SECRET": "cluster-s3cret"})
    cluster.start_coordinator()
    a, b = cluster.start_member(), cluster.start_member()
    cluster.add(a)
    wait_until(lambda: cluster.status(a)["epoch"] >= 1, 3, f"{a} to receive its view")
    cluster.add(b, timeout=20)
    cluster.wait_chain([a, b], timeout=20)
    assert cluster.client(b).set("k", b"v") is True
    assert cluster.client(a).get("k") == b"v"
    with pytest.raises(redis.AuthenticationError):  # the secret is not a client password
        redis.Redis(host=HOST, port=port_of(a), username="catena", password="wrong").ping()


def test_requirepass_noauth_wrongpass_and_auth(secured):
    cluster, members = secured
    for addr in members:
        c = Raw(addr)
        try:
            c.send(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
            assert c.read_reply().startswith(b"-NOAUTH")
            c.send(b"*2\r\n$4\r\nAUTH\r\n$5\r\nwrong\r\n")
            assert c.read_reply().startswith(b"-WRONGPASS")
            c.send(b"*3\r\n$4\r\nAUTH\r\n$7\r\nnobody!\r\n$%d\r\n%s\r\n" % (len(PASSWORD), PASSWORD.encode()))
            assert c.read_reply().startswith(b"-WRONGPASS")
            c.send(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
            assert c.read_reply().startswith(b"-NOAUTH")
            c.send(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(PASSWORD), PASSWORD.encode()))
            assert c.read_reply() == b"+OK\r\n"
            c.send(b"*1\r\n$4\r\nPING\r\n")
            assert c.read_reply() == b"+PONG\r\n"
        finally:
            c.close()


def test_hello_3_with_auth(secured):
    cluster, members = secured
    c = Raw(members[0])
    try:
        c.send(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")
        assert c.read_reply().startswith(b"-NOAUTH")
        c.send(b"*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$5\r\nwrong\r\n")
        assert c.read_reply().startswith(b"-WRONGPASS")
        pw = PASSWORD.encode()
        c.send(b"*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$%d\r\n%s\r\n" % (len(pw), pw))
        hello = c.read_reply(b"\r\n")
        assert hello.startswith(b"%"), hello  # a RESP3 map
    finally:
        c.close()


def test_redis_py_with_password(secured):
    cluster, members = secured
    addr = members[0]
    no_retry = Retry(NoBackoff(), 0)  # redis-py retries auth failures with backoff (seconds) by default
    with pytest.raises(redis.AuthenticationError, match="HELLO must be called"):
        redis.Redis(host=HOST, port=port_of(addr), socket_timeout=READ_TIMEOUT_S, retry=no_retry).get("k")
    with pytest.raises(redis.AuthenticationError, match="invalid username-password pair"):
        redis.Redis(host=HOST, port=port_of(addr), password="nope", socket_timeout=READ_TIMEOUT_S,
                    retry=no_retry).ping()
    with redis.Redis(host=HOST, port=port_of(addr), password=PASSWORD, socket_timeout=READ_TIMEOUT_S) as c:
        assert c.set("pw:a", b"1") is True  # default protocol: HELLO 3 AUTH default <pw>
        assert c.incr("pw:n") == 1
    with redis.Redis(host=HOST, port=port_of(addr), username="default", password=PASSWORD, protocol=2,
                     socket_timeout=READ_TIMEOUT_S) as c2:  # AUTH default <pw>, RESP2
        assert c2.incr("pw:n") == 2
        p = c2.pipeline(transaction=False)
        p.get("pw:a").incr("pw:n")
        assert p.execute() == [b"1", 3]

    async def main():
        a = redis.asyncio.Redis(host=HOST, port=port_of(addr), password=PASSWORD, socket_timeout=READ_TIMEOUT_S)
        try:
            assert await a.incr("pw:n") == 4
            assert await a.mget(["pw:a", "pw:n"]) == [b"1", b"4"]
        finally:
            await a.aclose()

    asyncio.run(asyncio.wait_for(main(), 60))
