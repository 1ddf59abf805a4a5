"""Helpers for the automatic-repair integration tests: chains of members that register with
the coordinator by themselves (`--coordinator`), and a write load whose clients retry like a
careful application does (same request id via CATENA.REQ, next member on an error or timeout).
"""

from __future__ import annotations

import itertools
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from conftest import CHAIN_TIMEOUT_S, HOST, Cluster, WriteLoad, port_of, wait_until

REQUEST_TIMEOUT_S = 2.0  # one attempt; a timed-out request is retried (same id) at the next member
GIVE_UP_S = 12.0  # a request still unanswered after this long has an unknown outcome (< WriteLoad.stop's join)


def registered_chain(cluster: Cluster, n: int = 3, extras: list[tuple[str, ...]] | None = None) -> list[str]:
    """A coordinator and `n` members started with --coordinator (member i with `extras[i]`
    flags), joining one at a time in start order (each registers once the previous one is in
    the chain); returns the chain."""
    if cluster.coordinator is None:
        cluster.start_coordinator()
    chain: list[str] = []
    for i in range(n):
        addr = cluster.start_member(register=True, extra=extras[i] if extras else ())
        chain.append(addr)
        wait_until(lambda: cluster.chain() == chain, CHAIN_TIMEOUT_S, f"{addr} to join as tail of {chain}")
    cluster.wait_chain(chain)
    return chain


def epoch(cluster: Cluster) -> int:
    return int(cluster.coordinator_status()["epoch"])


def wait_removed(cluster: Cluster, addr: str, timeout: float = CHAIN_TIMEOUT_S) -> list[str]:
    """Until the coordinator's chain no longer names `addr` (it repaired by itself)."""
    return wait_until(lambda: (c := cluster.chain()) and addr not in c and c, timeout,
                      f"the coordinator to remove {addr} from the chain")


def wait_rejoined(cluster: Cluster, addr: str, size: int, timeout: float = CHAIN_TIMEOUT_S) -> list[str]:
    """Until `addr` is the tail of a chain of `size` members that all act on the newest view."""
    chain = wait_until(lambda: (c := cluster.chain()) and len(c) == size and c[-1] == addr and c, timeout,
                       f"{addr} to rejoin as the tail of a {size}-member chain")
    cluster.wait_chain(chain)
    return chain


class RetryingLoad(WriteLoad):
    """Writer threads (one per member given); each starts at its member and moves to the next
    on an error or a timeout, retrying the same request (CATENA.REQ client-id n ...) until it is
    acknowledged. Requests alternate between SET of a unique key (`acked`, as in WriteLoad) and
    INCR of the thread's counter: a retried INCR must be applied at most once, so the k-th
    acknowledged INCR must answer k.

    `first_ack_after(t)` is when writes flowed again after `t`: the earliest acknowledgement of
    a request first sent after `t` (a reply to an older request may have been in flight)."""

    def __init__(self, cluster: Cluster, members: list[str], prefix: str = "rl"):
        super().__init__(cluster, members, threads_per_target=1, prefix=prefix)
        self.incrs: dict[str, int] = {}  # counter key -> acknowledged INCRs
        self.unknown: dict[str, int] = {}  # counter key -> INCRs given up on (outcome unknown)
        self.bad_replies: list[str] = []  # an INCR answered with a wrong count
        self._acks: list[tuple[float, float]] = []  # (first sent, acknowledged), monotonic seconds

    def _client(self, addr: str) -> redis.Redis:
        # redis-py's own retries (10, with backoff, by default) off: the rule here is ours.
        return redis.Redis(host=HOST, port=port_of(addr), password=self.cluster.password,
                           socket_timeout=REQUEST_TIMEOUT_S, socket_connect_timeout=REQUEST_TIMEOUT_S,
                           retry=Retry(NoBackoff(), 0))

    def _run(self, target: str, _n: int) -> None:
        i = self.targets.index(target)
        cid = f"{self.prefix}-{i}-{time.time_ns()}"
        counter = f"{self.prefix}:ctr:{i}"
        targets = itertools.cycle(self.targets[i:] + self.targets[:i])
        client = self._client(next(targets))
        try:
            for n in itertools.count(1):
                if self._stop.is_set():
                    return
                cmd = ("SET", f"{self.prefix}:{i}:{n}", str(n)) if n % 2 else ("INCR", counter)
                sent = time.monotonic()
                reply = self._request(client, targets, sent, cid, n, cmd)
                client = reply[1]
                self._record(counter, cmd, reply[0], sent)
        finally:
            client.close()

    def _request(self, client, targets, sent: float, cid: str, n: int, cmd: tuple):
        """(reply or None if given up, the client to use next)."""
        while True:
            try:
                return client.execute_command("CATENA.REQ", cid, n, *cmd), client
            except (redis.RedisError, OSError) as exc:
                with self._lock:
                    self.errors.append(f"{client.connection_pool.connection_kwargs['port']}: {exc!r}")
                client.close()
                client = self._client(next(targets))
                if time.monotonic() - sent > GIVE_UP_S:
                    return None, client
                self._stop.wait(0.02)  # not synchronisation: do not spin on a refused connect

    def _record(self, counter: str, cmd: tuple, reply, sent: float) -> None:
        now = time.monotonic()
        with self._lock:
            if reply is not None:
                self._acks.append((sent, now))
            if cmd[0] == "SET":
                if reply is not None:
                    self.acked[cmd[1]] = cmd[2].encode()
            elif reply is None:
                self.unknown[counter] = self.unknown.get(counter, 0) + 1
            else:
                k = self.incrs[counter] = self.incrs.get(counter, 0) + 1
                if not self.unknown.get(counter) and int(reply) != k:
                    self.bad_replies.append(f"{counter}: acknowledged INCR #{k} answered {reply!r}")

    def first_ack_after(self, t: float) -> float | None:
        with self._lock:
            return min((acked for sent, acked in self._acks if sent >= t), default=None)

    def wait_flowing_after(self, t: float, timeout: float) -> float:
        """Seconds from `t` until a request first sent after `t` was acknowledged."""
        acked = wait_until(lambda: self.first_ack_after(t), timeout,
                           f"writes to flow again (errors: {self.errors[-3:]})")
        return acked - t

    # -- checking ---------------------------------------------------------------------------------

    def lost_at(self, addr: str) -> list[str]:
        """What `addr` lacks of the acknowledged writes: one line per problem (empty: none)."""
        problems = list(self.bad_replies)
        problems += [f"{addr}: {k} acknowledged {v!r}, found {got!r}"
                     for k, (v, got) in self.missing_at(addr).items()]
        with self._lock:
            incrs, unknown = dict(self.incrs), dict(self.unknown)
        c = self.cluster.client(addr)
        for key, n in incrs.items():
            got = int(c.get(key) or 0)
            if not n <= got <= n + unknown.get(key, 0):
                problems.append(f"{addr}: {key} had {n} acknowledged INCRs (+{unknown.get(key, 0)} unknown), "
                                f"holds {got}")
        return problems
