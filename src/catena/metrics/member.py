"""A member's metrics. Most are read from the member's own state at scrape time (role, epoch,
seqs, sent list, forwarded writes, clients, loop turns); `MemberMetrics` keeps only what must be
counted as it happens: data commands (every one counted; one in SAMPLE named, timed as the
client sees it at this member, and its outcome seen), log writes and fsyncs (timed on the data
dir's IoClock), snapshots."""

from __future__ import annotations

import time

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from catena.chain import disk, ops
from catena.metrics.buckets import Buckets, histogram
from catena.metrics.membership import agent_families
from catena.resp.codec import Error

_WRITES = frozenset(ops.WRITES) | {name.lower() for name in ops.WRITES}
REQ = b"CATENA.REQ"
SAMPLE = 16  # one command in this many is timed and its outcome seen (the rest are only counted)


def _name(args: list[bytes]) -> bytes:
    """The command's name as sent (the one inside CATENA.REQ id no [lowest] command…)."""
    name = args[0]
    if len(name) == 10 and name.upper() == REQ and len(args) > 3:
        name = args[4] if args[3].isdigit() and len(args) > 4 else args[3]
    return name


class _Timed:
    """The reply token the replica resolves for a sampled command: resolves the client's
    Deferred, then records the latency and the outcome."""

    __slots__ = ("reply", "stats", "name", "start")

    def __init__(self, reply, stats: "MemberMetrics", name: bytes, start: float):
        self.reply, self.stats, self.name, self.start = reply, stats, name, start

    @property
    def deferred(self):
        """The token it wraps (a blocked client's member asks it whether the client is gone)."""
        return self.reply

    def resolve(self, value) -> None:
        self.reply.resolve(value)
        self.stats.done(self.name, self.start, type(value) is Error)


class MeteredIoClock(disk.IoClock):
    """The data dir's IoClock (chain/disk.py), timing each write and fsync as it ends."""

    __slots__ = ("_busy", "append", "fsync", "slowest_fsync_s")

    def __init__(self, fsync: Buckets | None = None) -> None:
        self._busy = None
        self.append = Buckets()  # writes to the log
        self.fsync = fsync or Buckets()  # fsyncs of the log, snapshots and the data dir (shareable)
        self.slowest_fsync_s = 0.0  # since `slowest_fsync` last asked (the probe's slowness report)

    def slowest_fsync(self, now: float) -> float:
        """The slowest fsync since the last call (one in progress counts its age so far)."""
        started, slowest = self._busy, self.slowest_fsync_s
        self.slowest_fsync_s = 0.0
        if started is not None and started[0].startswith("fsync"):
            slowest = max(slowest, now - started[1])
        return slowest

    @property
    def busy(self):
        return self._busy

    @busy.setter
    def busy(self, value) -> None:
        started = self._busy
        self._busy = value
        if value is None and started is not None:
            what, start = started
            if what.startswith("fsync"):
                took = time.monotonic() - start
                self.fsync.observe(took)
                self.slowest_fsync_s = max(self.slowest_fsync_s, took)
            elif what == "write to the log":
                self.append.observe(time.monotonic() - start)


class MemberMetrics:
    """Event counters of one member (the collector reads the rest from the node). Every data
    command is counted (one addition); one in SAMPLE is also named, timed from its arrival to
    its reply and its outcome seen (timing every one costs ~1.4 µs a command, and counting each
    by name ~0.5 µs: 4-5% of a pipelined GET's CPU at the member)."""

    def __init__(self) -> None:
        self.commands = 0  # every data command
        self.sampled: dict[tuple[bytes, bool], int] = {}  # (command as sent, failed) -> sampled count
        self.latency = {"read": Buckets(), "write": Buckets()}
        self.io = MeteredIoClock()
        self.sync_io = MeteredIoClock(self.io.fsync)  # the log's background fsync (everysec), in its thread
        self.snapshot_io = MeteredIoClock(self.io.fsync)  # the snapshot writer thread's writes and fsyncs
        self.snapshot = Buckets()
        self.url = ""  # http://…/metrics when the metrics port is open

    def track(self, reply, args: list[bytes]):
        """The token to give the replica for a client's data command `args`: `reply` itself,
        or for one command in SAMPLE a token that times it."""
        self.commands = n = self.commands + 1
        if n % SAMPLE:
            return reply
        return _Timed(reply, self, _name(args), time.perf_counter())

    def answered(self, args: list[bytes], value) -> None:
        """A data command answered at once (a read of this member's own data): counted, and
        one in SAMPLE seen (in no time to speak of)."""
        self.commands = n = self.commands + 1
        if not n % SAMPLE:
            self.done(_name(args), time.perf_counter(), type(value) is Error)

    def done(self, name: bytes, start: float, failed: bool) -> None:
        elapsed = time.perf_counter() - start
        key = (name, failed)
        self.sampled[key] = self.sampled.get(key, 0) + 1
        self.latency["write" if name in _WRITES else "read"].observe(elapsed)

    def outcomes(self) -> dict[tuple[str, str], int]:
        """Sampled commands by lower-case name (clients may send any case) and outcome."""
        out: dict[tuple[str, str], int] = {}
        for (name, failed), n in self.sampled.items():
            key = (name.decode(errors="replace").lower(), "error" if failed else "ok")
            out[key] = out.get(key, 0) + n
        return out

    def status(self) -> dict:
        """For MEMBER.STATUS: reads and writes answered so far (estimated from the sample; the
        status page's rates), and where the metrics are."""
        reads = writes = 0
        for (name, _), n in self.sampled.items():
            if name in _WRITES:
                writes += n
            else:
                reads += n
        share = self.commands / max(1, reads + writes)
        return {"reads": round(reads * share), "writes": round(writes * share), "metrics": self.url}

    def timed_snapshot(self, store, blob: bytes) -> None:
        start = time.perf_counter()
        store(blob)
        self.snapshot.observe(time.perf_counter() - start)


class MemberCollector:
    """Reads a `MemberNode` at scrape time."""

    def __init__(self, node):
        self.node = node

    def collect(self):
        node, m = self.node, self.node.metrics
        r = node.replica
        status = r.status()
        chain = str(status["chain_id"])
        yield CounterMetricFamily("catena_commands", "Data commands received", value=m.commands)
        outcomes = CounterMetricFamily("catena_commands_sampled", f"One data command in {SAMPLE}, by command and "
                                       "outcome (ok, or an error reply)", labels=["command", "outcome"])
        for key, n in sorted(m.outcomes().items()):
            outcomes.add_metric(list(key), n)
        yield outcomes
        calls = CounterMetricFamily("catena_command_calls", "Commands this member ran, by name, counted exactly "
                                    "(INFO commandstats): every command of every connection", labels=["command"])
        rejected = CounterMetricFamily("catena_command_rejected", "Commands refused before they ran, by name (wrong "
                                       "arguments, arity, permissions; counted exactly)", labels=["command"])
        for name, (n, failed) in sorted(node.table.calls.items()):
            label = name.decode(errors="replace").lower()
            calls.add_metric([label], n)
            rejected.add_metric([label], failed)
        yield calls
        yield rejected
        yield histogram("catena_command_duration_seconds", f"Time from a data command's arrival at this member "
                        f"to its reply, by kind (read or write); one command in {SAMPLE}",
                        {(k,): b for k, b in m.latency.items()}, ("kind",))
        yield CounterMetricFamily("catena_forwarded_writes", "Writes clients sent here while this member was not "
                                  "the head (forwarded to it)", value=r.forwarded_total)
        role = GaugeMetricFamily("catena_chain_role", "1 for this member's role in its chain (head, middle, tail, "
                                 "head+tail, learner, none)", labels=["chain", "role"])
        role.add_metric([chain, status["role"]], 1)
        yield role
        for name, key, doc in (
            ("catena_epoch", "epoch", "Epoch of the newest view this member adopted"),
            ("catena_last_seq", "last_seq", "Sequence number of the last entry this member holds"),
            ("catena_commit_seq", "commit_seq", "Sequence number of the last entry this member knows committed"),
            ("catena_sent_list_entries", "sent_list", "Entries sent to the successor and not yet acknowledged"),
            ("catena_waiting_writes", "waiting_writes", "Client writes waiting here for their commit"),
            ("catena_keys", "keys", "Keys this member holds"),
            ("catena_serving_reads", "serving_reads", "1 while this member answers reads from its own data "
             "(it holds a read lease)"),
        ):
            g = GaugeMetricFamily(name, doc, labels=["chain"])
            g.add_metric([chain], status[key])
            yield g
        yield histogram("catena_log_append_seconds", "Time of one write() of records to the durable log",
                        {(): m.io.append})
        yield histogram("catena_log_fsync_seconds", "Time of one fsync of the log, a snapshot or the data dir",
                        {(): m.io.fsync})
        yield histogram("catena_snapshot_duration_seconds", "Time to store one snapshot (write, fsync, rename, "
                        "log truncation)", {(): m.snapshot})
        yield from loop_families(node.loop_monitor)
        yield from server_families(node.server)
        if node.membership is not None:
            yield from agent_families(node.membership)


def loop_families(monitor):
    now = monitor.clock()
    yield GaugeMetricFamily("catena_longest_loop_turn_seconds", "Longest event-loop turn since start "
                            "(to within 10 ms)", value=monitor.longest_s)
    yield GaugeMetricFamily("catena_longest_loop_turn_recent_seconds", "Longest event-loop turn over the last 10 s",
                            value=monitor.recent_s(now))
    yield CounterMetricFamily("catena_slow_loop_turns", "Event-loop turns longer than 50 ms", value=monitor.slow_turns)


def server_families(server):
    """Connections and bytes of a RESP server (clients and inbound peer links)."""
    yield GaugeMetricFamily("catena_connected_clients", "Open connections on the RESP port",
                            value=len(server.connections))
    yield CounterMetricFamily("catena_received_bytes", "Bytes received on the RESP port", value=server.bytes_in)
    yield CounterMetricFamily("catena_sent_bytes", "Bytes sent on the RESP port", value=server.bytes_out)
