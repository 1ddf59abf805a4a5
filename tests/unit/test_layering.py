"""The import graph of src/catena: no cycles, pure machines that import no I/O, and a client
library that does not load the server side.

Every `import` counts, at module level or inside a function (a lazy import only hides a cycle);
importing a module's own parent package does not (Python has already run it).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "catena").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(path: Path, known) -> set[str]:
    """The catena modules `path` imports anywhere (for `from a import b`: a, and a.b if a module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in out if m in known}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: {d for d in imports(p, mods) if d != m and not m.startswith(d + ".")} for m, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


PURE = ["catena.coordinator.machine", "catena.coordinator.ending", "catena.coordinator.requests",
        "catena.coordinator.reconfig", "catena.coordinator.effects", "catena.coordinator.pushes",
        "catena.coordinator.sessions", "catena.coordinator.health", "catena.coordinator.election",
        "catena.control", "catena.chain.replica", "catena.membership.detector", "catena.client.router",
        "catena.view", "catena.leases", "catena.cluster_topology", "catena.chain.slot_guard",
        "catena.coordinator.migration", "catena.coordinator.link_health", "catena.coordinator.damping",
        "catena.coordinator.slowness", "catena.chain.link_watch", "catena.coordinator.shards",
        "catena.coordinator.slot_map", "catena.coordinator.layout", "catena.chain.slot_ops",
        "catena.chain.slot_table", "catena.chain.state_load", "catena.chain.state_dump", "catena.chain.removal"]
IO = {"asyncio", "socket", "time", "threading", "subprocess", "aetcd"}  # (`random` only types an injected rng)


def test_pure_machines_import_no_io():
    mods = modules()
    for name in PURE:
        tree = ast.parse(mods[name].read_text())
        used = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        used |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not used & IO, f"{name} imports {sorted(used & IO)}"


def test_the_coordinator_imports_nothing_of_the_members_chain():
    g = graph()
    for name in g:
        if name.startswith("catena.coordinator."):
            assert not {d for d in g[name] if d.startswith("catena.chain")}, name


def test_the_client_library_loads_no_server_side_module():
    code = "import catena.client, sys; print(' '.join(m for m in sys.modules if m.startswith('catena.')))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=SRC).stdout.split())
    assert "catena.client" in loaded
    server = {m for m in loaded if m.split(".")[1] in ("chain", "membership", "chaos")
              or m in ("catena.coordinator.service", "catena.coordinator.machine", "catena.resp.server")}
    assert not server, sorted(server)
