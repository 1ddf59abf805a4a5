"""A coordinator keeping two chains and the slot map (docs/sharding.md): members register into
a chain with --chain, the coordinator splits the slots between the chains, makes each chain's
table match and pushes the other chain to every member; redis-py's RedisCluster and
`redis-cli -c` then read and write across both chains, and `redis-cli --cluster check` agrees."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import urllib.request
import sys

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from catena.slots import key_slot

from conftest import CHAIN_TIMEOUT_S, HOST, Cluster, Proc, catena_argv, free_port_block, port_of, wait_until
from etcd_helpers import etcd, make_ha, requires_etcd  # noqa: F401 - fixtures

pytestmark = pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
CLUSTER_MODE = ("--cluster-enabled", "yes")
HALF = 8192  # chain 0 holds 0-8191, chain 1 8192-16383


def start_sharded(c: Cluster, chains: int = 2, members: int = 2) -> list[list[str]]:
    """A coordinator with `chains` chains (unless `c` has its coordinators already); `members`
    members register into each, in order; returns once every member sees every chain's slots
    (the logs go to stderr if not)."""
    if c.coordinator is None:
        c.start_coordinator(extra=("--chains", str(chains)))
    out: list[list[str]] = []
    try:
        for chain in range(chains):
            addrs = []
            for _ in range(members):
                addrs.append(c.start_member(register=True, extra=("--chain", str(chain))))
                wait_until(lambda: c.admin("MASTER.GET_CHAIN", chain) == addrs, CHAIN_TIMEOUT_S,
                           f"chain {chain} to be {addrs}")
            out.append(addrs)
        step = 16384 // chains
        want = [(i * step, (i + 1) * step - 1, addrs[0]) for i, addrs in enumerate(out)]
        for addr in (a for addrs in out for a in addrs):
            wait_until(lambda: shards_seen(c, addr) == want, CHAIN_TIMEOUT_S, f"{addr} to see every chain's slots")
    except BaseException:
        sys.stderr.write(c.logs())
        raise
    return out


def shards_seen(c: Cluster, addr: str) -> list[tuple[int, int, str]]:
    """(first, last, master) per range in `addr`'s CLUSTER SLOTS."""
    return sorted((r[0], r[1], f"{r[2][0].decode()}:{r[2][1]}") for r in c.member_cmd(addr, "CLUSTER", "SLOTS"))


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("sharded"), member_args=CLUSTER_MODE)
    try:
        yield c, start_sharded(c)
    finally:
        c.close()


def test_each_member_sees_both_chains_and_serves_only_its_own_slots(sharded):
    c, (zero, one) = sharded
    key_high = next(f"k{i}" for i in range(100) if key_slot(f"k{i}".encode()) >= HALF)
    key_low = next(f"k{i}" for i in range(100) if key_slot(f"k{i}".encode()) < HALF)
    assert c.client(zero[1]).set(key_low, "0") is True
    with pytest.raises(redis.exceptions.MovedError) as moved:
        c.client(zero[1]).set(key_high, "x")
    assert moved.value.message == f"{key_slot(key_high.encode())} {one[0]}"
    with pytest.raises(redis.exceptions.MovedError) as moved:
        c.client(one[0]).get(key_low)  # reads too: chain 1 does not serve chain 0's slots
    assert moved.value.message == f"{key_slot(key_low.encode())} {zero[0]}"
    nodes = c.member_cmd(one[1], "CLUSTER", "NODES").decode()
    assert f"0-{HALF - 1}" in nodes and f"{HALF}-16383" in nodes and "myself,slave" in nodes
    info = c.member_cmd(zero[0], "CLUSTER", "INFO").decode()
    assert "cluster_state:ok" in info and "cluster_size:2" in info
    status = c.coordinator_status()
    assert status["slots"] == [0, HALF, 1, HALF], status


def test_redis_cluster_and_redis_cli_read_and_write_across_both_chains(sharded):
    c, (zero, one) = sharded
    with RedisCluster(startup_nodes=[ClusterNode(HOST, port_of(zero[1]))], decode_responses=True,
                      socket_timeout=15) as rc:
        assert sorted(n.name for n in rc.get_primaries()) == sorted([zero[0], one[0]])
        for i in range(200):
            assert rc.set(f"rc:{i}", str(i)) is True
        assert [rc.get(f"rc:{i}") for i in range(200)] == [str(i) for i in range(200)]
    owners = {i: (zero if key_slot(f"rc:{i}".encode()) < HALF else one) for i in range(200)}
    assert {id(v) for v in owners.values()} == {id(zero), id(one)}  # both chains hold some
    for i, chain in owners.items():
        assert c.client(chain[-1]).get(f"rc:{i}") == str(i).encode()
    from catena.client import Client

    with Client(c.coordinator, timeout=20) as client:  # knows chain 0 first, follows -MOVED to chain 1
        for i in range(20):
            assert client.set(f"cc:{i}", str(i)) is True
        assert [client.get(f"cc:{i}") for i in range(20)] == [str(i).encode() for i in range(20)]
        assert {key_slot(f"cc:{i}".encode()) >= HALF for i in range(20)} == {True, False}
    port = str(port_of(zero[0]))
    key = next(f"cli{i}" for i in range(100) if key_slot(f"cli{i}".encode()) >= HALF)
    assert subprocess.run(["redis-cli", "-c", "-p", port, "SET", key, "v"], capture_output=True, text=True,
                          timeout=30).stdout.strip() == "OK"
    assert subprocess.run(["redis-cli", "-c", "-p", port, "GET", key], capture_output=True, text=True,
                          timeout=30).stdout.strip() == "v"
    assert c.client(one[1]).get(key) == b"v"
    check = subprocess.run(["redis-cli", "--cluster", "check", one[1]], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "2 masters" in check.stdout, check.stdout
    assert "[OK] All nodes agree about slots configuration." in check.stdout, check.stdout
    assert "[OK] All 16384 slots covered." in check.stdout, check.stdout


def test_a_member_registering_into_another_chain_or_a_missing_one_is_refused(sharded):
    c, (zero, one) = sharded
    host, port = zero[0].rsplit(":", 1)
    with pytest.raises(redis.ResponseError, match=f"is a member of chain 0"):
        c.admin("MASTER.ADD", host, port, 1)
    with pytest.raises(redis.ResponseError, match="bad chain id"):
        c.admin("MASTER.ADD", host, port, "x")
    assert c.admin("MASTER.GET_CHAIN", 0) == zero and c.admin("MASTER.GET_CHAIN", 1) == one
    assert c.admin("MASTER.GET_VIEW", one[1])[3:] == one  # a member's own chain
    with pytest.raises(redis.ResponseError, match="bad chain id 'x'"):
        c.admin("MASTER.GET_CHAIN", "x")
    with pytest.raises(redis.ResponseError, match="there is no chain 5"):
        c.admin("MASTER.HEAD", 5)


def tag_for(slot: int) -> str:
    """A hash tag whose keys hash to `slot`."""
    return next(f"t{i}" for i in range(1_000_000) if key_slot(f"t{i}".encode()) == slot)


def test_master_move_under_a_running_writer_loses_nothing_acknowledged(sharded):
    """Slots 100-103 (chain 0) move to chain 1 while a RedisCluster client writes keys in them
    and in a slot that stays: every acknowledged write is there afterwards, at chain 1 for the
    moved slots, and every member's CLUSTER SLOTS shows the new map."""
    c, (zero, one) = sharded
    tags = [tag_for(s) for s in (100, 101, 102, 103, 5000)]
    acked: dict[str, str] = {}
    stop = threading.Event()

    def write():
        with RedisCluster(startup_nodes=[ClusterNode(HOST, port_of(zero[0]))], decode_responses=True,
                          socket_timeout=15) as rc:
            i = 0
            while not stop.is_set():
                key, value = f"{{{tags[i % len(tags)]}}}:{i}", f"v{i}"
                try:
                    if rc.set(key, value) is True:
                        acked[key] = value
                except redis.RedisError:
                    pass  # not acknowledged: may or may not be there
                i += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        wait_until(lambda: len(acked) >= 50, 30, "the writer to get going")
        assert c.admin("MASTER.MOVE", "100-103", 1, timeout=60) == 4
        assert c.admin("MASTER.MOVE", "100", 1) == 0  # already there: nothing to move
        wait_until(lambda: len(acked) >= 400, 30, "more writes after the moves")
    finally:
        stop.set()
        writer.join(30)
    want = sorted([(0, 99, zero[0]), (100, 103, one[0]), (104, HALF - 1, zero[0]), (HALF, 16383, one[0])])
    for addr in zero + one:
        wait_until(lambda: shards_seen(c, addr) == want, CHAIN_TIMEOUT_S, f"{addr} to see the new map")
    with RedisCluster(startup_nodes=[ClusterNode(HOST, port_of(one[1]))], decode_responses=True,
                      socket_timeout=15) as rc:
        lost = {k: v for k, v in acked.items() if rc.get(k) != v}
    assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {list(lost.items())[:3]}"
    moved = [k for k in acked if not k.startswith(f"{{{tags[-1]}}}")]
    assert moved and all(c.client(one[1]).get(k) == acked[k].encode() for k in moved[:50])
    assert c.member_cmd(zero[1], "CLUSTER", "COUNTKEYSINSLOT", 100) == 0  # the source dropped its copy
    assert c.coordinator_status()["slots"] == [0, HALF - 4, 1, HALF + 4]
    with pytest.raises(redis.ResponseError, match="bad slot range"):
        c.admin("MASTER.MOVE", "16384", 1)
    with pytest.raises(redis.ResponseError, match="no chain 7"):
        c.admin("MASTER.MOVE", "5", 7)


def test_catena_up_with_chains_then_reshard_rebalance_and_status(tmp_path):
    """`catena up --chains 2 --members 1`: two chains, the slots split; `catena reshard` moves 3
    slots from chain 0 to chain 1 and `catena rebalance` moves them back, each printing its
    progress; `catena status` shows each chain's slots."""
    port = free_port_block(3)
    root = tmp_path / "up"
    up = Proc("up", catena_argv("up", "--chains", "2", "--members", "1", "--port", str(port), "--data-dir", str(root)),
              tmp_path / "up.log")
    try:
        wait_until(lambda: "Ctrl-C stops everything" in up.log_path.read_text() or not up.alive, 60,
                   "catena up to start (its last line)")
        assert up.alive, up.log_tail()
        assert "chain 1" in up.log_path.read_text() and "redis-cli -c -p" in up.log_path.read_text()
        url = re.search(r"^coordinator .* metrics (http://\S+/metrics)", up.log_path.read_text(), re.M).group(1)
        with urllib.request.urlopen(url, timeout=10) as r:
            metrics = r.read().decode()
        assert 'catena_chain_members{chain="0"} 1.0' in metrics and 'catena_chain_members{chain="1"} 1.0' in metrics
        coordinator, secret = ("--coordinator", f"{HOST}:{port}"), ("--secret-file", str(root / "secret"))

        def catena(*args):
            out = subprocess.run(catena_argv(*args), capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stdout + out.stderr
            return out.stdout

        status = catena("status", *coordinator)
        assert "chain 0  epoch 1  slots 8192" in status and "chain 1  epoch 1  slots 8192" in status, status
        assert f"{HOST}:{port + 2}" in status
        out = catena("reshard", *coordinator, *secret, "--from", "0", "--to", "1", "--slots", "3")
        assert "moved 3/3 slots (100%), last 8189-8191 to chain 1" in out, out
        assert "slots 8189" in catena("status", *coordinator)
        assert "moved 3/3 slots" in catena("rebalance", *coordinator, *secret)
        assert catena("rebalance", *coordinator, *secret).strip() == "nothing to move"
        denied = subprocess.run(catena_argv("reshard", *coordinator, "--from", "0", "--to", "1", "--slots", "1"),
                                capture_output=True, text=True, timeout=60)
        assert denied.returncode == 1 and "NOPERM" in denied.stderr, denied.stderr
    finally:
        status = up.stop(timeout=20)
    assert status == 0, up.log_tail()


def test_a_restarted_coordinator_finishes_or_undoes_the_moves_it_finds(sharded):
    """Two intents left in the store by a leader that died mid-move: slot 300's at its first
    phase (finished: the slot and its keys go to chain 1) and slot 301's at `copy` although
    chain 1 never began importing it (chain 1 refuses the copy: undone, the slot stays at
    chain 0, writable). Both intents are gone afterwards."""
    c, (zero, one) = sharded
    tags = {s: tag_for(s) for s in (300, 301)}
    for s, tag in tags.items():
        assert c.client(zero[0]).set(f"{{{tag}}}:k", f"v{s}") is True
    addr = c.coordinator
    assert c.stop(addr) == 0
    path = c.root / f"coordinator-{port_of(addr)}" / "coordinator.json"
    saved = json.loads(path.read_text())
    saved["parts"]["moves/300"] = {"slot": 300, "source": 0, "target": 1, "phase": "clear", "copied": [],
                                   "since": None, "fence": 1}
    saved["parts"]["moves/301"] = {"slot": 301, "source": 0, "target": 1, "phase": "copy", "copied": [],
                                   "since": None, "fence": 1}
    path.write_text(json.dumps(saved))
    c.start_coordinator(port=port_of(addr), extra=("--chains", "2"))

    def settled():
        parts = json.loads(path.read_text())["parts"]
        return not any(name.startswith("moves/") for name in parts) and parts["slots"]

    slots = wait_until(settled, CHAIN_TIMEOUT_S, "the restarted coordinator to finish both moves")
    assert [300, 300] in slots["chains"]["1"] and [301, HALF - 1] in slots["chains"]["0"], slots
    wait_until(lambda: c.client(one[1]).get(f"{{{tags[300]}}}:k") == b"v300", CHAIN_TIMEOUT_S,
               "slot 300's key at chain 1")
    assert c.client(zero[1]).get(f"{{{tags[301]}}}:k") == b"v301"
    assert c.client(zero[0]).set(f"{{{tags[301]}}}:k", "again") is True


@requires_etcd
def test_on_etcd_a_chain_repair_writes_its_own_key_and_a_new_leader_keeps_the_map(etcd, make_ha):
    """Two coordinators on etcd, two chains: the state is one key per chain plus the map; a
    member failure in chain 1 rewrites chain 1's key only; after the leader is killed the new
    one pushes the same map and moves a slot under its own fence."""
    ha = make_ha(etcd, coordinators=2, extras=[("--chains", "2")] * 2, member_args=CLUSTER_MODE)
    zero, one = start_sharded(ha, members=2)
    keys = {k.decode()[len(ha.prefix) + 1:]: v for k, v in ha.etcd.get_prefix(f"{ha.prefix}/")}
    assert {"leader", "cluster", "chains/0", "chains/1", "slots"} <= set(keys) and "state" not in keys
    chain0 = ha.etcd.get(f"{ha.prefix}/chains/0")[2]  # its mod revision
    ha.kill9(one[1])
    wait_until(lambda: ha.admin("MASTER.GET_CHAIN", 1) == [one[0]], CHAIN_TIMEOUT_S, "chain 1 repaired")
    assert ha.etcd.get(f"{ha.prefix}/chains/0")[2] == chain0  # chain 0's key untouched
    assert json.loads(ha.etcd.get(f"{ha.prefix}/chains/1")[0])["view"][2] == [one[0]]
    old = ha.coordinator
    ha.kill9(old)
    new = ha.wait_leader(other_than=old)
    assert ha.admin("MASTER.SLOTMAP")[1:] == [0, "0-8191", 1, "8192-16383"]
    tag = tag_for(50)
    assert ha.client(zero[0]).set(f"{{{tag}}}:k", "v") is True
    assert ha.admin("MASTER.MOVE", "50", 1, timeout=60) == 1
    wait_until(lambda: shards_seen(ha, zero[1])[1][2] == one[0], CHAIN_TIMEOUT_S, "chain 0 to see slot 50 moved")
    assert ha.client(one[0]).get(f"{{{tag}}}:k") == b"v" and new != old


def test_a_closed_session_deletes_its_keys_on_whichever_chain_serves_them(sharded):
    c, (zero, one) = sharded
    low = next(f"s{i}" for i in range(100) if key_slot(f"s{i}".encode()) < 300)  # chain 0's slots
    high = next(f"s{i}" for i in range(100) if key_slot(f"s{i}".encode()) >= HALF)
    with RedisCluster(startup_nodes=[ClusterNode(HOST, port_of(zero[0]))], decode_responses=True,
                      socket_timeout=15) as rc:
        assert rc.set(low, "a") is True and rc.set(high, "b") is True
        sid = c.admin("MASTER.SESSION.OPEN", 60000)
        assert c.admin("MASTER.SESSION.ATTACH", sid, low, high) in ("OK", True)
        assert c.admin("MASTER.SESSION.CLOSE", sid, timeout=30) in ("OK", True)
        assert rc.get(low) is None and rc.get(high) is None


def test_a_member_registering_into_a_new_chain_adds_it_with_no_slots_then_slots_move_to_it(sharded):
    """Adding a chain: a member started with --chain 2 founds chain 2; the coordinator empties
    its table, announces it with no slots (a master without slots in CLUSTER NODES), and
    MASTER.MOVE then gives it slots that clients follow."""
    c, (zero, one) = sharded
    new = c.start_member(register=True, extra=("--chain", "2"))
    wait_until(lambda: c.admin("MASTER.GET_CHAIN", 2) == [new], CHAIN_TIMEOUT_S, "chain 2 to be founded")
    wait_until(lambda: new in c.member_cmd(zero[0], "CLUSTER", "NODES").decode(), CHAIN_TIMEOUT_S,
               "chain 2 to be announced to chain 0")
    assert c.coordinator_status()["slots"][-2:] == [2, 0]
    tag = tag_for(200)
    assert c.client(zero[0]).set(f"{{{tag}}}:k", "v") is True
    with pytest.raises(redis.exceptions.MovedError):
        c.client(new).get(f"{{{tag}}}:k")  # its table was emptied before it was announced
    assert c.admin("MASTER.MOVE", "200", 2, timeout=60) == 1
    with RedisCluster(startup_nodes=[ClusterNode(HOST, port_of(one[0]))], decode_responses=True,
                      socket_timeout=15) as rc:
        wait_until(lambda: rc.nodes_manager.initialize() or rc.get_node_from_key(f"{{{tag}}}:k").name == new,
                   CHAIN_TIMEOUT_S, "the cluster client to route slot 200 to chain 2")
        assert rc.get(f"{{{tag}}}:k") == "v" and rc.set(f"{{{tag}}}:k", "w") is True
    assert c.client(new).get(f"{{{tag}}}:k") == b"w"


@requires_etcd
def test_on_etcd_a_leader_killed_mid_move_leaves_an_intent_its_successor_finishes(etcd, make_ha):
    """MASTER.MOVE of slots 0-199 while the leader is killed: the next leader finds the intent
    of the slot being moved and finishes or undoes it; afterwards no intent is left, the members
    agree with the saved map, and every key written before is readable where the map says."""
    ha = make_ha(etcd, coordinators=2, extras=[("--chains", "2")] * 2, member_args=CLUSTER_MODE)
    zero, one = start_sharded(ha, members=1)
    keys = {}
    for i in range(20000):
        key = f"m{i}"
        if key_slot(key.encode()) < 200 and key_slot(key.encode()) not in {key_slot(k.encode()) for k in keys}:
            keys[key] = f"v{i}"
    with RedisCluster(startup_nodes=[ClusterNode(HOST, port_of(zero[0]))], decode_responses=True,
                      socket_timeout=15) as rc:
        for key, value in keys.items():
            assert rc.set(key, value) is True
    old = ha.coordinator
    outcome = []

    def move():
        try:
            outcome.append(ha.admin("MASTER.MOVE", "0-199", 1, timeout=60))
        except (redis.RedisError, OSError) as exc:  # its leader was killed
            outcome.append(exc)

    mover = threading.Thread(target=move)
    mover.start()

    def intents():
        return [k for k, _ in ha.etcd.get_prefix(f"{ha.prefix}/moves/")]

    wait_until(lambda: ha.admin("MASTER.SLOTMAP")[4].startswith("0-") and intents(), CHAIN_TIMEOUT_S,
               "a few slots moved and one under way")
    ha.kill9(old)
    mover.join(60)
    assert outcome and not isinstance(outcome[0], int), outcome  # the move did not finish under the old leader
    ha.wait_leader(other_than=old)
    wait_until(lambda: not intents(), CHAIN_TIMEOUT_S, "the new leader to finish or undo the move")
    raw = ha.admin("MASTER.SLOTMAP")
    saved = {int(raw[i]): raw[i + 1] for i in range(1, len(raw), 2)}
    want = sorted((a, b, (zero, one)[chain][0]) for chain, word in saved.items()
                  for a, b in (tuple(map(int, r.split("-"))) for r in word.split(",")))
    for addr in zero + one:
        wait_until(lambda: shards_seen(ha, addr) == want, CHAIN_TIMEOUT_S, f"{addr} to agree with the map")
    with RedisCluster(startup_nodes=[ClusterNode(HOST, port_of(one[0]))], decode_responses=True,
                      socket_timeout=15) as rc:
        assert {k: rc.get(k) for k in keys} == keys
