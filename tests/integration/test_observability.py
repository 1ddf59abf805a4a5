"""Metrics ports, JSON logs and the status page's data on real processes: the dashboard's
queries name metrics that are exported, counters move with the traffic, and a kill -9 is
counted, logged once as a repair and once as a view change (with its cause), and shown as an
event."""

from __future__ import annotations

import json
import time
import urllib.error

import pytest

from agent_helpers import AgentGroup, members
from conftest import addr_of, free_port, wait_until
from observability_helpers import dashboard_metrics, http_get, json_lines, scrape, start_observed, value

REPAIR_TIMEOUT_S = 20.0


def test_dashboard_queries_exported_metrics_that_follow_the_traffic(make_cluster):
    c, chain, metrics = start_observed(make_cluster)
    head, middle, tail = chain
    c.client(head).set("a", "1")
    for i in range(20):
        c.client(middle).set(f"k{i}", i)  # forwarded to the head
    assert c.client(tail).get("a") == b"1"
    exported = {}
    for addr in [c.coordinator, *chain]:
        exported.update(scrape(metrics[addr]))
    names = {name for name, _ in exported}
    names |= {n[:-len(suffix)] for n in names for suffix in ("_bucket", "_count", "_sum") if n.endswith(suffix)}
    missing = dashboard_metrics() - names
    assert not missing, f"the dashboard queries metrics nobody exports: {sorted(missing)}"

    at_head, at_middle = scrape(metrics[head]), scrape(metrics[middle])
    assert value(at_head, "catena_commands_total") >= 1
    assert value(at_middle, "catena_commands_total") >= 20
    assert value(at_middle, "catena_commands_sampled_total", command="set", outcome="ok") >= 1  # 1 in 16
    assert value(at_middle, "catena_command_calls_total", command="set") == 20  # every one, by name
    assert value(at_tail := scrape(metrics[tail]), "catena_command_calls_total", command="get") >= 1
    assert value(at_tail, "catena_command_rejected_total", command="get") == 0
    assert value(at_middle, "catena_forwarded_writes_total") >= 20
    assert value(at_head, "catena_forwarded_writes_total") == 0
    for addr, role in zip(chain, ("head", "middle", "tail")):
        s = scrape(metrics[addr])
        assert value(s, "catena_chain_role", role=role) == 1
        assert value(s, "catena_commit_seq") >= 21
        assert value(s, "catena_epoch") == int(c.coordinator_status()["epoch"])
    at_coord = scrape(metrics[c.coordinator])
    assert value(at_coord, "catena_coordinator_leader") == 1
    assert value(at_coord, "catena_chain_members") == 3
    assert value(at_coord, "catena_probes_total", outcome="ok") > 0
    assert value(at_coord, "catena_view_changes_total", cause="join") == 3
    status_url = f"http://{metrics[c.coordinator]}/status.json"
    json.loads(http_get(status_url))  # the first sample of each member's counters

    def rates():
        for i in range(50):
            c.client(head).set(f"r{i}", i)
            c.client(tail).get(f"r{i}")
        r = json.loads(http_get(status_url))["rates"]
        return r if r["writes_per_s"] > 0 and r["reads_per_s"] > 0 else None

    wait_until(rates, 30, "the status page to show write and read rates")
    with pytest.raises(urllib.error.HTTPError, match="404"):
        http_get(f"http://{metrics[head]}/nothing-here")


def test_a_kill_is_counted_logged_once_and_shown(make_cluster):
    c, chain, metrics = start_observed(make_cluster)
    victim = chain[1]
    before = scrape(metrics[c.coordinator])
    assert value(before, "catena_repairs_total", cause="failure") == 0
    c.kill9(victim)
    c.wait_chain([chain[0], chain[2]], timeout=REPAIR_TIMEOUT_S)
    def repaired():
        s = scrape(metrics[c.coordinator])
        return s if value(s, "catena_repairs_total", cause="failure") else None

    after = wait_until(repaired, REPAIR_TIMEOUT_S, "the repair to be counted")
    assert value(after, "catena_repairs_total", cause="failure") == 1
    assert value(after, "catena_view_changes_total", cause="failure") == 1
    assert value(after, "catena_chain_members") == 2

    log = json_lines(c.procs[c.coordinator].log_path)
    assert all({"time", "level", "process", "chain", "epoch", "event", "message"} <= line.keys() for line in log)
    repairs = [line for line in log if line["event"] == "repair"]
    views = [line for line in log if line["event"] == "view_change" and line.get("cause") == "failure"]
    assert len(repairs) == 1 and victim in repairs[0]["message"] and repairs[0]["cause"] == "failure", repairs
    assert len(views) == 1 and victim not in views[0]["message"].split("members=")[1], views
    assert views[0]["epoch"] == int(c.coordinator_status()["epoch"]) and views[0]["chain"] == 0
    assert repairs[0]["process"] == f"coordinator {c.coordinator}"
    adopted = [line for line in json_lines(c.procs[chain[0]].log_path)
               if line["event"] == "view_change" and line["epoch"] == views[0]["epoch"]]
    assert len(adopted) == 1, adopted  # the head logs once that it adopted the new view

    status = json.loads(http_get(f"http://{metrics[c.coordinator]}/status.json"))
    assert [m["addr"] for m in status["chains"][0]["members"]] == [chain[0], chain[2]]
    removed = [e for e in status["events"] if e["kind"] == "removed"]
    assert removed and removed[0]["member"] == victim and time.time() - removed[0]["at"] < 120


def test_standalone_agents_export_membership(tmp_path):
    group = AgentGroup(tmp_path)
    metrics = [addr_of(free_port()) for _ in range(2)]
    try:
        first = group.spawn(None, [], "--metrics-listen", metrics[0], "--log-format", "json")
        wait_until(lambda: members(first), 30, f"agent {first} to serve MEMBERS")
        second = group.spawn(None, [first], "--metrics-listen", metrics[1], "--log-format", "json")
        group.wait_converged([first, second])
        s = wait_until(lambda: (lambda s: s if value(s, "catena_membership_members", state="alive") == 2 else None)(
            scrape(metrics[0])), 30, "the first agent's metrics to count both agents alive")
        assert value(s, "catena_membership_datagrams_received_total") > 0
        group.procs[second].kill9()
        s = wait_until(lambda: (lambda s: s if value(s, "catena_membership_members", state="failed") == 1 else None)(
            scrape(metrics[0])), 30, "the first agent's metrics to show the killed one failed")
        assert value(s, "catena_membership_members", state="alive") == 1
        assert value(s, "catena_membership_suspicions_total") >= 1
        assert all(line["process"] == f"agent 127.0.0.1:{first}" for line in json_lines(group.procs[first].log_path))
    finally:
        group.close()
