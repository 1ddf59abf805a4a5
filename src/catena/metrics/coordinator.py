"""A coordinator's metrics. Read at scrape time: leader status, the saved views (epoch, members,
learner, queued adds), sessions, current probe misses, etcd errors. Counted as they happen (one
call each from the service shell): probes with their round trip, view changes and repairs by
cause, leader changes; each of those also enters the event ring the status page shows."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from catena.coordinator.effects import (  # noqa: F401 (the causes, re-exported)
    ADMIN_ADD, ADMIN_REMOVE, CAUGHT_UP, FAIL_SLOW, FAILURE, JOIN, LINK_CUT, RESTART, ROLLED_BACK)
from catena.metrics.buckets import Buckets, histogram
from catena.metrics.events import EventRing
from catena.metrics.member import server_families
from catena.metrics.membership import agent_families

# why a view changed (the `cause` label, effects.py); repairs are done by catena itself
REPAIRS = frozenset({FAILURE, LINK_CUT, FAIL_SLOW, RESTART, ROLLED_BACK})
_EVENT_KIND = {FAILURE: "removed", LINK_CUT: "removed", FAIL_SLOW: "removed", ADMIN_REMOVE: "removed", RESTART: "restarted", ROLLED_BACK: "add_rolled_back",
               JOIN: "joining", ADMIN_ADD: "joining", CAUGHT_UP: "joined"}


class CoordinatorMetrics:
    def __init__(self) -> None:
        self.events = EventRing()
        self.probe_rtt = Buckets()
        self.probes = {"ok": 0, "missed": 0}
        self.view_changes: dict[str, int] = {}
        self.repairs: dict[str, int] = {}
        self.leader_changes = 0  # times this coordinator began or stopped leading
        self.url = ""  # http://…/metrics when the metrics port is open

    def probed(self, seconds: float, ok: bool) -> None:
        if ok:
            self.probes["ok"] += 1
            self.probe_rtt.observe(seconds)
        else:
            self.probes["missed"] += 1

    def view_changed(self, view, cause: str, member: str) -> None:
        self.view_changes[cause] = self.view_changes.get(cause, 0) + 1
        if cause in REPAIRS:
            self.repairs[cause] = self.repairs.get(cause, 0) + 1
        self.events.add(_EVENT_KIND.get(cause, "view"), member, view.epoch,
                        f"epoch {view.epoch}: {describe(cause, member)}; chain {','.join(view.members) or '(empty)'}"
                        + (f", learner {view.learner}" if view.learner else ""))

    def leading(self, leading: bool, me: str, epoch: int, why: str) -> None:
        self.leader_changes += 1
        self.events.add("leader" if leading else "follower", me, epoch, why)


def describe(cause: str, member: str) -> str:
    """The cause of a view change in words, for logs and events."""
    return {FAILURE: f"{member} failed its probes and was removed",
            LINK_CUT: f"{member}'s chain link made no progress and it was removed",
            FAIL_SLOW: f"{member} was persistently slow (fsyncs or loop turns) and was removed", RESTART: f"{member} restarted and rejoins",
            ROLLED_BACK: f"the add of {member} made no progress and was rolled back",
            JOIN: f"{member} registered and joins", ADMIN_ADD: f"MASTER.ADD {member}",
            ADMIN_REMOVE: f"MASTER.REMOVE {member}", CAUGHT_UP: f"{member} caught up and became the tail",
            }.get(cause, f"{cause} {member}")


class CoordinatorCollector:
    """Reads a `Coordinator` (service.py) at scrape time."""

    def __init__(self, coord):
        self.coord = coord

    def collect(self):
        c = self.coord
        m: CoordinatorMetrics = c.metrics
        leading = c.acting()
        yield GaugeMetricFamily("catena_coordinator_leader", "1 while this coordinator leads and may act",
                                value=int(leading))
        yield CounterMetricFamily("catena_coordinator_leader_changes", "Times this coordinator began or stopped "
                                  "leading", value=m.leader_changes)
        views = sorted(c.views().values(), key=lambda v: v.chain_id)
        for name, value_of, doc in (
            ("catena_chain_epoch", lambda v: v.epoch, "Epoch of the chain's newest saved view"),
            ("catena_chain_members", lambda v: len(v.members), "Members in the chain (the learner not counted)"),
            ("catena_chain_learner", lambda v: int(v.learner is not None), "1 while a member is being added"),
        ):
            g = GaugeMetricFamily(name, doc, labels=["chain"])
            for view in views:
                g.add_metric([str(view.chain_id)], value_of(view))
            yield g
        yield GaugeMetricFamily("catena_queued_adds", "Members waiting to be added",
                                value=sum(len(x.saved.queued) for x in c.machines.values()))
        yield GaugeMetricFamily("catena_sessions", "Client sessions open", value=len(c.machine.saved.sessions))
        changes = CounterMetricFamily("catena_view_changes", "Views saved, by cause", labels=["cause"])
        for cause, n in sorted(m.view_changes.items()):
            changes.add_metric([cause], n)
        yield changes
        repairs = CounterMetricFamily("catena_repairs", "Chain repairs catena made by itself, by cause",
                                      labels=["cause"])
        for cause in sorted(REPAIRS):
            repairs.add_metric([cause], m.repairs.get(cause, 0))
        yield repairs
        probes = CounterMetricFamily("catena_probes", "Health probes of members, by outcome", labels=["outcome"])
        for outcome, n in m.probes.items():
            probes.add_metric([outcome], n)
        yield probes
        yield histogram("catena_probe_duration_seconds", "Round trip of a health probe that was answered",
                        {(): m.probe_rtt})
        misses = GaugeMetricFamily("catena_member_probe_misses", "Probes a member missed in a row",
                                   labels=["member"])
        health = getattr(c.machine, "health", None)
        if leading and health is not None:
            for member in sorted(set(c.view.members) | ({c.view.learner} - {None})):
                misses.add_metric([member], health.misses.get(member, 0))
        yield misses
        conn = getattr(c.store, "conn", None)  # etcd only (0 with the embedded store)
        yield CounterMetricFamily("catena_etcd_errors", "etcd calls that failed (unreachable, no quorum, too slow)",
                                  value=getattr(conn, "errors", 0))
        yield from server_families(c.server)
        if c.membership is not None:
            yield from agent_families(c.membership)
