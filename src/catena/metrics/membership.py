"""A membership agent's metrics, read from its detector and UDP shell at scrape time: members
by state, suspicions, refutations, declared failures, datagrams and drops."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

_COUNTERS = (
    ("suspicions", "catena_membership_suspicions", "Members this agent began to suspect"),
    ("refutations", "catena_membership_refutations", "Suspicions of this agent it refuted"),
    ("failures_declared", "catena_membership_failures_declared", "Members this agent declared failed"),
    ("probes", "catena_membership_probes", "Direct confirmation probes sent"),
    ("datagrams_sent", "catena_membership_datagrams_sent", "UDP datagrams sent"),
    ("datagrams_received", "catena_membership_datagrams_received", "UDP datagrams received"),
)


def agent_families(agent):
    machine = agent.machine
    if machine is None:
        return
    states = GaugeMetricFamily("catena_membership_members", "Members this agent knows, by state",
                               labels=["state"])
    counts = {"alive": 0, "suspect": 0, "failed": 0, "left": 0}
    for v in machine.views(agent._loop.time(), True):
        name = v.status.name.lower()
        counts[name] = counts.get(name, 0) + 1
    for state, n in counts.items():
        states.add_metric([state], n)
    yield states
    stats = agent.stats()
    for key, name, doc in _COUNTERS:
        yield CounterMetricFamily(name, doc, value=stats.get(key, 0))
    dropped = CounterMetricFamily("catena_membership_dropped_datagrams", "Datagrams refused, by reason",
                                  labels=["reason"])
    for key, n in sorted(stats.items()):
        if key.startswith("dropped_"):
            dropped.add_metric([key[len("dropped_"):]], n)
    yield dropped


class AgentCollector:
    """A standalone agent's (`catena agent`)."""

    def __init__(self, agent):
        self.agent = agent

    def collect(self):
        yield from agent_families(self.agent)


async def serve_metrics(agent, listen: str):
    """A standalone agent's metrics port (closed by the caller)."""
    from catena.metrics.http import MetricsServer, registry

    server = MetricsServer(registry(AgentCollector(agent)))
    await server.start(listen)
    return server
