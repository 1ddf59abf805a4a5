"""Roles, as an attacker tries them: with a cluster secret (as `catena up` always has), the
internal plane (views, probes, revocations, peer links, registration) and the operator's
commands (MASTER.ADD/REMOVE) refuse a caller with no credential and one with the data password,
and leave data, views and the chain as they were."""

from __future__ import annotations

import os

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from conftest import HOST, port_of, wait_until

PASSWORD = "data-pw"
SECRET = "cluster-s3cret"

INTERNAL = [
    ("MEMBER.VIEW", "0", "1000000", "-", "127.0.0.1:1"),
    ("MEMBER.PROBE", "0", "0", "0"),
    ("MEMBER.REVOKE", "1000000"),
    ("PEER", "127.0.0.1:1", SECRET),
]
OPERATOR = [("MASTER.REMOVE", HOST, "1"), ("MASTER.ADD", HOST, "1"), ("MASTER.REGISTER", HOST, "1", "1", "", "0")]


@pytest.fixture
def chain(make_cluster):
    cluster = make_cluster(password=PASSWORD, env={**os.environ, "CATENA_SECRET": SECRET})
    cluster.start_coordinator()
    a, b = cluster.start_member(), cluster.start_member()
    cluster.add(a)
    cluster.add(b, timeout=20)
    cluster.wait_chain([a, b], timeout=20)
    assert cluster.client(a).set("k", b"v") is True
    return cluster, [a, b]


# redis-py retries an authentication failure with backoff (seconds) by default
NO_RETRY = Retry(NoBackoff(), 0)


def _callers(port: int):
    """A connection with no credential, and one logged in with the data password."""
    anon = redis.Redis(host=HOST, port=port, protocol=2, socket_timeout=10, retry=NO_RETRY)
    data = redis.Redis(host=HOST, port=port, protocol=2, password=PASSWORD, socket_timeout=10, retry=NO_RETRY)
    return {"anonymous": anon, "data client": data}


def test_internal_and_operator_commands_are_refused_and_change_nothing(chain):
    cluster, members = chain
    before = {m: cluster.status(m) for m in members}
    chain_before = cluster.admin("MASTER.GET_CHAIN")
    for m in members:
        for who, c in _callers(port_of(m)).items():
            for cmd in INTERNAL:
                # NOPERM (redis-py: NoPermissionError) or, with no credential, NOAUTH
                with pytest.raises((redis.exceptions.NoPermissionError, redis.exceptions.AuthenticationError)):
                    c.execute_command(*cmd)
    coordinator = port_of(cluster.coordinator)
    with redis.Redis(host=HOST, port=coordinator, protocol=2, socket_timeout=10) as c:
        for cmd in OPERATOR:
            with pytest.raises(redis.exceptions.NoPermissionError):
                c.execute_command(*cmd)
        assert c.execute_command("MASTER.GET_CHAIN")  # discovery stays readable
        assert c.execute_command("ACL", "WHOAMI") == b"default"
    for m in members:
        now = cluster.status(m)
        assert (now["epoch"], now["members"]) == (before[m]["epoch"], before[m]["members"])
    assert cluster.admin("MASTER.GET_CHAIN") == chain_before
    # the chain still serves: a write commits and every member reads it
    assert cluster.client(members[0]).set("after", b"1") is True
    for m in members:
        wait_until(lambda m=m: cluster.client(m).get("after") == b"1", 10, f"{m} to read the write")
        assert cluster.client(m).get("k") == b"v"


def test_a_failed_auth_keeps_the_connection_identity(chain):
    cluster, members = chain
    with redis.Redis(host=HOST, port=port_of(members[0]), protocol=2, socket_timeout=10,
                     username="catena", password=SECRET, retry=NO_RETRY) as c:
        assert c.execute_command("ACL", "WHOAMI") == b"catena"
        with pytest.raises(redis.exceptions.AuthenticationError):
            c.execute_command("AUTH", "default", "wrong")
        assert c.execute_command("ACL", "WHOAMI") == b"catena"  # still logged in, as Redis keeps it
        assert c.execute_command("MEMBER.STATUS")
        c.execute_command("AUTH", PASSWORD)
        assert c.execute_command("ACL", "WHOAMI") == b"default"
        with pytest.raises(redis.exceptions.NoPermissionError, match="^User default has no permissions"):
            c.execute_command("MEMBER.REVOKE", "1000000")


def test_the_operator_authenticates_with_the_cluster_secret(chain):
    """Without an admin password, MASTER.ADD/REMOVE need the cluster secret."""
    cluster, members = chain
    with redis.Redis(host=HOST, port=port_of(cluster.coordinator), protocol=2, socket_timeout=30,
                     username="catena", password=SECRET, decode_responses=True) as c:
        assert c.execute_command("MASTER.REMOVE", *members[1].rsplit(":", 1)) in ("OK", True)
    cluster.wait_chain([members[0]], timeout=20)


def test_a_member_with_a_password_but_no_secret_refuses_to_start(make_cluster, tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "CATENA_SECRET"}
    out = subprocess.run([sys.executable, "-m", "catena", "member", "--listen", f"{HOST}:1",
                          "--data-dir", str(tmp_path / "m"), "--requirepass", "pw",
                          "--coordinator", f"{HOST}:2"], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2 and "needs the cluster secret" in out.stderr, out.stderr


def test_a_data_client_cannot_poison_the_request_ids_members_forward_under(cluster):
    """A member forwards a client's write to the head under its own request id
    (`host:port/incarnation`, n). A data client that pre-records that id at the head with
    CATENA.REQ must not make the forwarded write answer OK without being applied: data
    clients' ids live in their own namespace."""
    head, tail = cluster.start(2)
    incarnation = cluster.member_cmd(tail, "MEMBER.PROBE", 0, 0, 0)[0]  # as an insider, learn the id
    forward_id = f"{tail}/{incarnation}"
    attacker = cluster.client(head)
    assert attacker.execute_command("CATENA.REQ", forward_id, 1, 1, "SET", "decoy", "x") == b"OK"
    victim = cluster.client(tail)
    assert victim.set("victim", b"applied") is True  # forwarded by the tail as (forward_id, 1)
    for m in (head, tail):
        wait_until(lambda m=m: cluster.client(m).get("victim") == b"applied", 10, f"{m} to hold the write")


def test_sessions_need_the_data_password_when_members_have_one(make_cluster):
    """The session attack: without a password on the coordinator, anyone could open a session,
    attach keys it could not write, and have the coordinator delete them. Refused, unless the
    coordinator requires the members' password too."""
    cluster = make_cluster(password=PASSWORD, env={**os.environ, "CATENA_SECRET": SECRET})
    cluster.start_coordinator()
    a = cluster.start_member()
    cluster.add(a)
    cluster.wait_chain([a], timeout=20)
    assert cluster.client(a).set("victim", b"v") is True
    with redis.Redis(host=HOST, port=port_of(cluster.coordinator), protocol=2, socket_timeout=10) as c:
        with pytest.raises(redis.exceptions.NoPermissionError, match="start the coordinator with"):
            c.execute_command("MASTER.SESSION.OPEN", 100)
        with pytest.raises(redis.exceptions.ResponseError):
            c.execute_command("MASTER.SESSION.ATTACH", "0" * 32, "victim")
    assert cluster.client(a).get("victim") == b"v"


def test_sessions_work_when_the_coordinator_requires_the_members_password(make_cluster):
    import catena

    cluster = make_cluster(password=PASSWORD, env={**os.environ, "CATENA_SECRET": SECRET})
    cluster.start_coordinator(extra=("--requirepass", PASSWORD))
    a = cluster.start_member()
    cluster.add(a)
    cluster.wait_chain([a], timeout=20)
    with redis.Redis(host=HOST, port=port_of(cluster.coordinator), protocol=2, socket_timeout=10,
                     retry=NO_RETRY) as c:
        with pytest.raises(redis.exceptions.AuthenticationError):
            c.execute_command("MASTER.SESSION.OPEN", 100)  # no credential: NOAUTH
    with catena.Client(cluster.coordinator, password=PASSWORD) as client:
        client.open_session(ttl=5.0)
        client.set("ephemeral", "1", session=True)
        assert cluster.client(a).get("ephemeral") == b"1"
        client.close_session()
    wait_until(lambda: cluster.client(a).get("ephemeral") is None, 10, "the session's key to be deleted")


def test_a_member_with_the_wrong_secret_stops_with_a_clear_error(make_cluster):
    """A misconfigured secret is reported at start, naming the coordinator, never as endless
    flapping."""
    from conftest import Proc, catena_argv, free_port

    cluster = make_cluster(env={**os.environ, "CATENA_SECRET": SECRET})
    cluster.start_coordinator()
    port = free_port()
    env = {**os.environ, "CATENA_SECRET": "not-the-secret"}
    member = Proc("wrong-secret", catena_argv("member", "--listen", f"{HOST}:{port}", "--data-dir",
                                              str(cluster.root / "wrong"), "--coordinator", cluster.coordinator),
                  cluster.root / "wrong.log", env)
    try:
        wait_until(lambda: not member.alive, 30, "the member with the wrong secret to stop")
        assert member.popen.returncode == 2
        text = member.log_path.read_text()
        assert "refused this member's credentials" in text and "WRONGPASS" in text and cluster.coordinator in text
    finally:
        member.stop()


def test_forged_peer_frames_of_every_type_change_nothing(chain):
    """An attacker who cannot open a peer link (PEER refused) sends frames of every peer message
    type anyway, on a fresh connection and after the refused PEER: the member reads them as
    RESP garbage, and data, views and the chain stay as they were."""
    import socket
    import time

    from catena.chain import messages as pm
    from catena.chain.state import KVState

    cluster, members = chain
    head, tail = members
    before = {m: cluster.status(m) for m in members}
    big = 10**6
    entry = (big, before[tail]["last_seq"] + 1, 0, None, (0, b"k", b"forged", None, 0))
    forged = [
        pm.Sync(big, big, big), pm.Append(big, big, (entry,)), pm.Ack(big, big),
        pm.Snapshot(big, big, big, big, KVState().dump()), pm.SyncRequest(big),
        pm.Forward(big, 1, (b"x", 1, 1), (b"SET", b"k", b"forged")), pm.WriteReply(1, b"OK"),
        pm.Read(big, 1, (b"GET", b"k")), pm.ReadReply(1, b"x"), pm.Stale(big),
    ]
    conns = []  # all sent at once, then drained: the member answers or closes; silence is fine too
    for m in members:
        for preamble in (b"", b"*3\r\n$4\r\nPEER\r\n$11\r\n127.0.0.1:1\r\n$5\r\nguess\r\n"):
            for msg in forged:
                s = socket.create_connection((HOST, port_of(m)), timeout=5)
                s.sendall(preamble + pm.pack(msg))
                conns.append(s)
    deadline = time.monotonic() + 0.5
    for s in conns:
        with s:
            try:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                while s.recv(4096):
                    pass
            except (TimeoutError, ConnectionResetError):
                pass
    for m in members:
        now = cluster.status(m)
        assert (now["epoch"], now["members"]) == (before[m]["epoch"], before[m]["members"])
        assert cluster.client(m).get("k") == b"v"
    assert cluster.client(head).set("after-frames", b"1") is True
    wait_until(lambda: cluster.client(tail).get("after-frames") == b"1", 10, "the chain to still replicate")
