"""A coordinator and members with metrics ports and JSON logs, and readers for both."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from conftest import addr_of, free_port

DASHBOARD = Path(__file__).parents[2] / "contrib" / "grafana" / "catena.json"


def start_observed(make_cluster, members: int = 3) -> tuple:
    """(cluster, chain, {addr: metrics host:port}) with every process on --log-format json and
    members started with --coordinator (they register, and join in order)."""
    c = make_cluster(member_args=("--log-format", "json"))
    metrics = {}
    coordinator = addr_of(free_port())
    metrics[coordinator] = addr_of(free_port())
    c.start_coordinator(port=int(coordinator.rpartition(":")[2]),
                        extra=("--log-format", "json", "--metrics-listen", metrics[coordinator]))
    chain = []
    for _ in range(members):
        port = free_port()
        metrics[addr_of(port)] = addr_of(free_port())
        chain.append(c.start_member(port, register=True, extra=("--metrics-listen", metrics[addr_of(port)])))
        c.wait_chain(chain)
    return c, chain, metrics


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def scrape(metrics_addr: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted label items): value} of one /metrics page."""
    text = http_get(f"http://{metrics_addr}/metrics").decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def dashboard_metrics() -> set[str]:
    """Every catena_/process_ metric name the Grafana dashboard's queries use."""
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    return {m for e in exprs for m in re.findall(r"\b((?:catena|process)_[a-z_]+)", e)}


def json_lines(path: Path) -> list[dict]:
    """Every line of a log, each parsed as one JSON object (fails on any other line)."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]
