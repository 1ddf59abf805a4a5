"""Coordinators on etcd as real processes: kill -9 / SIGSTOP of the leader, a leader killed in
the middle of an add, etcd restarted, a member failing while no coordinator leads, and etcd's own
leader killed in a three-node etcd cluster. Members find the leader by discovery."""

from __future__ import annotations

import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from conftest import CHAIN_TIMEOUT_S, HOST, WriteLoad, port_of, wait_until
from etcd_helpers import (  # noqa: F401 - fixtures
    etcd, etcd3, join_chain, make_ha, requires_etcd, saved_state, saved_view,
)

pytestmark = requires_etcd


def ask(addr: str, *args, timeout: float = 3.0):
    """One command on a fresh connection, never retried (redis-py retries timeouts by default)."""
    with redis.Redis(host=HOST, port=port_of(addr), socket_timeout=timeout, socket_connect_timeout=timeout,
                     decode_responses=True, protocol=2, retry=Retry(NoBackoff(), 0)) as c:
        return c.execute_command(*args)


def error_of(addr: str, *args) -> str:
    try:
        ask(addr, *args)
    except redis.ResponseError as exc:
        return str(exc)
    raise AssertionError(f"{addr} answered {args} without an error")


def member_epochs(ha, members) -> dict[str, int]:
    return {m: int(ha.status(m)["epoch"]) for m in members}


def test_kill9_leader_another_takes_over_and_repairs(etcd, make_ha):
    ha = make_ha(etcd, coordinators=3)
    first = ha.coordinator
    followers = [a for a in ha.coordinators if a != first]
    chain = join_chain(ha, 3, discovery=etcd.url(ha.prefix))  # members follow the etcd leader key
    # Followers redirect in the documented form, and keep the state warm.
    assert error_of(followers[0], "MASTER.GET_CHAIN") == f"NOTLEADER {first}"
    epoch = int(ha.coordinator_status()["epoch"])
    wait_until(lambda: all(int(ha.role(f)["epoch"]) == epoch for f in followers), 10, "warm followers")

    with WriteLoad(ha, [chain[0]]) as load:
        load.wait_for_acks(20)
        ha.kill9(first)
        killed = time.monotonic()
        second = ha.wait_leader(other_than=first)
        took = time.monotonic() - killed
        assert ha.chain() == chain  # views continue from the saved state
        print(f"failover: kill -9 of the leader -> {second} answers admin commands after {took:.2f} s")
        # The new leader repairs a member failure on its own...
        ha.kill9(chain[1])
        wait_until(lambda: ha.chain() == [chain[0], chain[2]], CHAIN_TIMEOUT_S, "the new leader to repair the chain")
        load.wait_for_acks(20)
        # ...and MASTER.REMOVE works on it.
        ha.remove(chain[2])
        ha.wait_chain([chain[0]])
        load.wait_for_acks(10)
    assert int(ha.coordinator_status()["epoch"]) > epoch
    assert saved_state(ha)["fence"] == int(ha.coordinator_status()["fence"])
    assert not load.missing_at(chain[0])
    assert took < 10.0


def test_sigstop_leader_past_its_lease_changes_nothing(etcd, make_ha):
    ha = make_ha(etcd, coordinators=2)
    old = ha.coordinator
    other = next(a for a in ha.coordinators if a != old)
    chain = join_chain(ha, 3)
    ha.sigstop(old)
    # While it is paused a member dies: the paused leader's probes would remove it, the new
    # leader does.
    ha.kill9(chain[2])
    new = ha.wait_leader(other_than=old)
    assert new == other
    wait_until(lambda: ha.chain() == chain[:2], CHAIN_TIMEOUT_S, "the new leader to repair the chain")
    ha.remove(chain[1])  # one more change under the new fence
    ha.wait_chain(chain[:1])
    before = saved_state(ha)
    epochs = member_epochs(ha, chain[:1])
    ha.sigcont(old)
    # The resumed process steps down and answers as a follower; nothing it tried landed.
    wait_until(lambda: ha.role(old)["role"] == "follower" and ha.role(old)["leader"] == new, 20,
               "the resumed old leader to follow")
    assert error_of(old, "MASTER.GET_CHAIN") == f"NOTLEADER {new}"
    after = saved_state(ha)
    assert after["fence"] == before["fence"] == int(ha.coordinator_status()["fence"])
    assert after["views"] == before["views"]
    assert all(member_epochs(ha, chain[:1])[m] >= e for m, e in epochs.items())
    log = ha.procs[old].log_path.read_text()
    assert "no longer the leader" in log


def test_leader_killed_between_recording_an_add_and_finishing_it(etcd, make_ha):
    ha = make_ha(etcd, coordinators=2)
    first = ha.coordinator
    chain = join_chain(ha, 2)
    for i in range(50):
        ha.member_cmd(chain[0], "SET", f"k{i}", i)
    joiner = ha.start_member()  # no --coordinator: added by MASTER.ADD
    tail = chain[-1]
    ha.sigstop(tail)  # the joiner (which answers MASTER.ADD's identity check) cannot catch up from it
    host, port = joiner.rsplit(":", 1)
    try:
        # The add is recorded (learner in the saved view) at once, then waits for the catch-up:
        # give up on the reply and kill the leader before its probes could give up on the tail.
        ask(first, "MASTER.ADD", host, port, timeout=0.2)
    except redis.TimeoutError:
        pass
    ha.kill9(first)
    assert saved_view(ha)[3] == joiner, saved_view(ha)  # the intent the next leader finds
    ha.sigcont(tail)
    ha.wait_leader(other_than=first)
    # The new leader finishes the add it found in the saved view.
    ha.wait_chain(chain + [joiner])
    assert ha.member_cmd(joiner, "GET", "k49") == b"49"


def test_etcd_restart_and_a_member_failure_while_no_coordinator_leads(etcd, make_ha):
    ha = make_ha(etcd, coordinators=2)
    chain = join_chain(ha, 3)
    node = etcd.nodes[0]
    with WriteLoad(ha, [chain[0]]) as load:
        load.wait_for_acks(10)
        node.kill9()
        # Without etcd no coordinator may act: the leader steps down at its local deadline.
        wait_until(lambda: all(ha.role(a)["role"] == "follower" for a in ha.coordinators), 15,
                   "every coordinator to stop leading while etcd is down")
        # Members keep serving reads and writes with the view they have.
        load.wait_for_acks(20)
        ha.kill9(chain[1])  # nobody can repair this now
        refused = error_of(ha.coordinators[0], "MASTER.GET_CHAIN")  # redis-py strips TRYAGAIN
        assert refused.startswith("NOTLEADER") or "no coordinator leads" in refused, refused
        etcd.restart(node)
        # Ask whichever coordinator leads by then: both campaign once etcd is back, and the first
        # to win may lose its key to the other's election a moment later.
        wait_until(lambda: (ha.wait_leader(), ha.chain())[1] == [chain[0], chain[2]], CHAIN_TIMEOUT_S,
                   "the leader to repair the chain once etcd is back")
        ha.wait_chain([chain[0], chain[2]])
        load.wait_for_acks(20)
    assert not load.missing_at(chain[2])


def test_etcd_leader_killed_in_a_three_node_etcd(etcd3, make_ha):
    ha = make_ha(etcd3, coordinators=2)
    chain = join_chain(ha, 3, discovery=etcd3.url(ha.prefix))
    victim = etcd3.leader_node()
    victim.kill9()
    # The coordinators ride through etcd's own election (on the other endpoints).
    ha.wait_leader()
    ha.kill9(chain[2])
    # Ask whichever coordinator leads by then: the one found above may step down meanwhile,
    # having failed to renew its lease while etcd elected its new leader.
    wait_until(lambda: (ha.wait_leader(), ha.chain())[1] == chain[:2], CHAIN_TIMEOUT_S,
               "a coordinator to repair the chain after etcd's leader change")
    ha.wait_chain(chain[:2])
    assert ha.member_cmd(chain[0], "SET", "after", "1") is True
    assert ha.member_cmd(chain[1], "GET", "after") == b"1"
