"""The RedisRaft peer of bench/throughput: a 3-node RedisRaft cluster (Redis >= 7.2 with the
RedisLabs/redisraft module) on loopback ports, from the paths in REDISRAFT_SO and
REDISRAFT_SERVER (how to build both: bench/README.md)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_SO, ENV_SERVER = "REDISRAFT_SO", "REDISRAFT_SERVER"


def peer_paths() -> tuple[str, str] | str:
    """(module, redis-server) when both are given and exist, else a note saying what is missing."""
    so, server = os.environ.get(ENV_SO), os.environ.get(ENV_SERVER)
    if not so or not server:
        return (f"RedisRaft skipped: set {ENV_SO}=/path/to/redisraft.so and {ENV_SERVER}=/path/to/redis-server "
                "(Redis >= 7.2) to compare with it; bench/README.md says how to build both")
    for name, path in ((ENV_SO, so), (ENV_SERVER, server)):
        if not Path(path).is_file():
            return f"RedisRaft skipped: {name}={path} is not a file"
    return so, server


def start(procs, ports: list[int], so: str, server: str, fsync: bool, cli, wait_for, host: str) -> int:
    """Start a RedisRaft node per port (log-fsync yes/no), form one cluster; returns the leader's port."""
    tag = "fsync" if fsync else "nofsync"
    for i, port in enumerate(ports):
        d = procs.root / f"raft-{tag}-{i}"
        d.mkdir()
        procs.start(f"raft-{tag}-{port}", [
            server, "--port", str(port), "--bind", host, "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--dir", str(d), "--dbfilename", "raft.rdb",
            "--loadmodule", so, "--raft.log-filename", "raftlog.db", "--raft.addr", f"{host}:{port}",
            "--raft.log-fsync", "yes" if fsync else "no"])
    for port in ports:
        wait_for(lambda: cli(port, "PING", timeout=5) == "PONG", 30, f"RedisRaft node on {port}")
    cli(ports[0], "RAFT.CLUSTER", "INIT")
    wait_for(lambda: raft_info(cli, ports[0]).get("raft_role") == "leader", 30, "a RedisRaft leader")
    for port in ports[1:]:
        cli(port, "RAFT.CLUSTER", "JOIN", f"{host}:{ports[0]}")
    wait_for(lambda: all(raft_info(cli, p).get("raft_num_voting_nodes") == str(len(ports)) for p in ports),
             60, "every RedisRaft node voting")
    return ports[0]


def raft_info(cli, port: int) -> dict[str, str]:
    out = {}
    for line in cli(port, "INFO", "raft", timeout=5).splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out
