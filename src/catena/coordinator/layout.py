"""How the coordinator's state is laid out in its store (pure): in named parts, so that a change
writes only the parts it touches and one chain's reconfiguration never rewrites another's.

    cluster        {"schema", "cluster_id"}
    chains/<id>    {"view", "registry", "queued", "retired", "flaps"}: one chain's view, the
                   members registered into it, its add queue, its retired and damped members
    sessions/<id>  {"ttl_ms", "keys", "ending"?}: one client session
    slots          {"version", "chains": {id: [[first, last], …]}}: the slot map (cluster mode)
    moves/<slot>   a slot move's intent (migration.Move's fields)

On etcd a part is the key `<prefix>/<name>`; the embedded store keeps all parts in one file.
Schema 1 kept the whole state (one chain) under the single name `state`; `from_legacy` reads it.
A chain's coordinator machine works on a `CoordinatorState` of its own chain (`chain_state`) and
saves the parts that changed (`changed`).
"""

from __future__ import annotations

from catena.coordinator.reconfig import CoordinatorState
from catena.errors import CatenaError
from catena.view import View

SCHEMA = 2  # version of the layout; a store with a newer one is refused
LEGACY = "state"  # schema 1's one part
CLUSTER, SLOTS = "cluster", "slots"


def chain_part(chain_id: int) -> str:
    return f"chains/{chain_id}"


def move_part(slot: int) -> str:
    return f"moves/{slot}"


def chain_ids(parts: dict) -> list[int]:
    return sorted(int(name.split("/", 1)[1]) for name in parts if name.startswith("chains/"))


def parts_of(state: dict) -> dict[str, dict]:
    """One chain machine's state (`CoordinatorState.to_dict()` holding one view) as parts."""
    (wire,) = state["views"]
    chain = {"view": wire, "registry": state["registry"], "queued": state["queued"], "retired": state["retired"]}
    if state.get("flaps"):
        chain["flaps"] = state["flaps"]
    out = {CLUSTER: {"schema": SCHEMA, "cluster_id": state["cluster_id"]},
           chain_part(View.from_wire(wire).chain_id): chain}
    out.update((f"sessions/{sid}", s) for sid, s in state.get("sessions", {}).items())
    return out


def changed(old: dict | None, new: dict) -> dict[str, dict | None]:
    """The parts to write for a machine whose state goes from `old` (None: nothing saved yet,
    every part is written) to `new`; None deletes a part."""
    after = parts_of(new)
    if old is None:
        return after
    before = parts_of(old)
    out = {name: value for name, value in after.items() if before.get(name) != value}
    out.update((name, None) for name in before if name not in after)
    return out


def chain_state(parts: dict, chain_id: int) -> dict | None:
    """Chain `chain_id`'s machine state from the store's parts (None: no such chain). The
    sessions go with chain 0 (its machine ends them)."""
    chain = parts.get(chain_part(chain_id))
    if chain is None:
        return None
    sessions = {name.split("/", 1)[1]: s for name, s in parts.items() if name.startswith("sessions/")}
    return {"views": [chain["view"]], "registry": chain.get("registry", {}), "queued": chain.get("queued", []),
            "retired": chain.get("retired", {}), "flaps": chain.get("flaps", {}),
            "cluster_id": parts.get(CLUSTER, {}).get("cluster_id", ""), "sessions": sessions if chain_id == 0 else {}}


def from_legacy(raw: dict) -> dict[str, dict]:
    """Schema 1's single state (its registry, queue and sessions belong to chain 0) as parts."""
    state = CoordinatorState.from_dict(raw)
    parts: dict[str, dict] = {}
    for chain_id, view in sorted(state.views.items()):
        mine = chain_id == 0
        one = CoordinatorState({chain_id: view}, state.registry if mine else {}, state.queued if mine else [],
                               state.retired if mine else {}, state.cluster_id, state.sessions if mine else {},
                               state.flaps if mine else {})
        parts.update(parts_of(one.to_dict()))
    return parts


def whole(names) -> bool:
    """Do the part `names` make a state (a cluster part and a chain, or schema 1's one part)? A
    follower seeing one transaction's parts one by one waits until they do."""
    names = set(names)
    return LEGACY in names or (CLUSTER in names and any(n.startswith("chains/") for n in names))


def check(parts: dict, where: str, cluster_id: str | None = None) -> dict:
    """The parts (a schema-1 state read as parts), or CatenaError: another program's data, an
    unknown schema version, or another cluster's state when the operator named the cluster."""
    if LEGACY in parts and not chain_ids(parts):
        raw = parts[LEGACY]
        if not isinstance(raw, dict) or "views" not in raw:
            raise CatenaError(f"{where} does not hold catena coordinator state; refusing to use it")
        check_schema(raw.get("schema", 1), where)
        parts = from_legacy(raw)
    cluster = parts.get(CLUSTER)
    if not isinstance(cluster, dict) or not chain_ids(parts):
        raise CatenaError(f"{where} does not hold catena coordinator state; refusing to use it")
    check_schema(cluster.get("schema", 1), where)
    found = cluster.get("cluster_id", "")
    if cluster_id and found and found != cluster_id:
        raise CatenaError(f"{where} holds the state of cluster {found}, not of cluster {cluster_id} "
                          "(--cluster-id): refusing to start")
    return parts


def check_schema(schema, where: str) -> None:
    if not isinstance(schema, int) or schema > SCHEMA:
        raise CatenaError(f"{where} has state schema version {schema!r}; this catena knows versions up to {SCHEMA}: "
                          "refusing to start (upgrade catena, or use another store)")
