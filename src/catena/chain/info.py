"""A member's INFO: Redis's sections and field names, plus catena's own in a `catena` section.

`INFO` and `INFO default` answer the default sections, `INFO all`/`everything` every one
(commandstats included), `INFO s1 s2 …` those sections only (names case-insensitive). The
replication section shows the chain: this member's role, the chain's members and where this
member's history stands.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time

from catena import __version__
from catena.resp.commands import REDIS_VERSION

DEFAULT = ("server", "clients", "memory", "persistence", "stats", "replication", "cpu", "modules", "errorstats",
           "cluster", "keyspace", "catena")
EVERYTHING = DEFAULT[:-2] + ("commandstats", "latencystats") + DEFAULT[-2:]


def sections(args: list[bytes]) -> list[str]:
    """The sections `INFO args…` asks for, in Redis's order."""
    wanted = {a.decode(errors="replace").lower() for a in args[1:]}
    if not wanted or "default" in wanted:
        chosen = set(DEFAULT)
    else:
        chosen = set()
    if wanted & {"all", "everything"}:
        chosen = set(EVERYTHING)
    chosen |= wanted & set(EVERYTHING)
    return [s for s in EVERYTHING if s in chosen]


def render(node, args: list[bytes]) -> bytes:
    out = []
    for name in sections(args):
        lines = _SECTIONS[name](node)
        out.append("# " + ("Commandstats" if name == "commandstats" else name.capitalize()))
        out += lines
        out.append("")
    return ("\r\n".join(out[:-1]) + "\r\n").encode() if out else b""


def _server(node):
    uptime = int(time.time() - node.started)
    return [f"redis_version:{REDIS_VERSION}", "redis_git_sha1:00000000", "redis_git_dirty:0", "redis_mode:standalone",
            f"os:{platform.system()} {platform.release()} {platform.machine()}", "arch_bits:64",
            "multiplexing_api:epoll", f"process_id:{os.getpid()}", f"tcp_port:{node.listen.rpartition(':')[2]}",
            f"uptime_in_seconds:{uptime}", f"uptime_in_days:{uptime // 86400}", "hz:10", "configured_hz:10",
            f"executable:{sys.argv[0]}", "config_file:", f"catena_version:{__version__}",
            f"catena_liveness_port:{node.liveness.port if node.liveness else 0}"]


def _clients(node):
    clients = [c for c in node.table.clients()]
    return [f"connected_clients:{len(clients)}", f"maxclients:{node.server.limits.maxclients}",
            f"blocked_clients:{len(node.replica.blocked.waiters)}", "tracking_clients:0",
            f"pubsub_clients:{sum(1 for c in clients if c.channels or c.patterns)}"]


def _memory(node):
    rss = _rss_bytes()
    return [f"used_memory:{rss}", f"used_memory_human:{rss / 1048576:.2f}M", f"used_memory_rss:{rss}",
            f"used_memory_peak:{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}", "maxmemory:0",
            "maxmemory_policy:noeviction", "mem_fragmentation_ratio:1.00", "mem_allocator:libc",
            "lazyfree_pending_objects:0"]


def _persistence(node):
    saving = node._snapshotting is not None or node._store is not None  # a snapshot being taken or stored
    return ["loading:0", "async_loading:0", f"rdb_bgsave_in_progress:{int(saving)}", "rdb_last_bgsave_status:ok",
            "aof_enabled:1", "aof_rewrite_in_progress:0", "aof_last_write_status:ok",
            f"catena_fsync:{node.table.settings.get('appendfsync', 'everysec')}"]


def _stats(node):
    calls = node.table.calls
    return [f"total_connections_received:{node.server.accepted}",
            f"total_commands_processed:{sum(c[0] for c in calls.values())}", "instantaneous_ops_per_sec:0",
            "rejected_connections:0", "expired_keys:0", "evicted_keys:0", "keyspace_hits:0", "keyspace_misses:0",
            f"pubsub_channels:{len(node.pubsub.channels)}", f"pubsub_patterns:{len(node.pubsub.patterns)}",
            f"total_error_replies:{sum(c[1] for c in calls.values())}"]


def _replication(node):
    s = node.replica.status()
    view = node.replica.view
    members = list(view.members) if view else []
    lines = [f"role:{'master' if s['role'] in ('head', 'head+tail', 'none') else 'slave'}",
             f"connected_slaves:{max(len(members) - 1, 0)}", f"master_repl_offset:{s['last_seq']}",
             f"chain_role:{s['role']}"]
    lines += [f"chain_member{i}:{m}" for i, m in enumerate(members)]
    return lines + [f"{k}:{v}" for k, v in s.items() if k != "role"]


def _cpu(node):
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return [f"used_cpu_sys:{me.ru_stime:.6f}", f"used_cpu_user:{me.ru_utime:.6f}",
            f"used_cpu_sys_children:{children.ru_stime:.6f}", f"used_cpu_user_children:{children.ru_utime:.6f}"]


def _commandstats(node):
    return [f"cmdstat_{name.decode(errors='replace').lower()}:calls={calls},usec=0,usec_per_call=0.00,"
            f"rejected_calls=0,failed_calls={failed}" for name, (calls, failed) in sorted(node.table.calls.items())]


def _keyspace(node):
    s = node.replica.state
    return [f"db0:keys={len(s.data)},expires={len(s.expires)},avg_ttl=0"] if s.data else []


def _catena(node):
    return node.loop_monitor.info() + node.gc_stats.info()


_SECTIONS = {"server": _server, "clients": _clients, "memory": _memory, "persistence": _persistence,
             "stats": _stats, "replication": _replication, "cpu": _cpu, "modules": lambda n: [],
             "errorstats": lambda n: [], "cluster": lambda n: [f"cluster_enabled:{int(n.cluster_enabled)}"], "commandstats": _commandstats,
             "latencystats": lambda n: [], "keyspace": _keyspace, "catena": _catena}


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0
