"""The coordinator state's layout in parts (catena.coordinator.layout), the embedded store that
keeps them, and the independence of chains: a failure in one chain saves that chain's part
only and changes no other chain's view or epoch."""

from __future__ import annotations

import json

import pytest

from catena.coordinator import layout
from catena.coordinator.effects import Fail, Probe, Resign, Save
from catena.coordinator.machine import CoordinatorMachine, may_resign
from catena.coordinator.store import EmbeddedStore
from catena.errors import CatenaError


def legacy(epoch: int = 4) -> dict:
    return {"views": [[0, epoch, ["a:1", "b:1", "c:1"], None]], "registry": {"a:1": "1"}, "queued": ["d:1"],
            "retired": {}, "cluster_id": "c1", "sessions": {"s1": {"ttl_ms": 60000, "keys": ["k"]}}, "schema": 1}


def two_chains() -> dict:
    parts = layout.from_legacy(legacy())
    one = {"views": [[1, 9, ["x:1", "y:1", "z:1"], None]], "registry": {}, "queued": [], "retired": {},
           "cluster_id": "c1", "sessions": {}}
    return {**parts, **layout.parts_of(one)}


def test_schema_1_state_becomes_chain_0_parts_and_sessions_a_part_each():
    parts = layout.check({layout.LEGACY: legacy()}, "here")
    assert sorted(parts) == ["chains/0", "cluster", "sessions/s1"]
    assert parts["cluster"] == {"schema": layout.SCHEMA, "cluster_id": "c1"}
    state = layout.chain_state(parts, 0)
    assert state["views"] == [[0, 4, ["a:1", "b:1", "c:1"], None]] and state["queued"] == ["d:1"]
    assert state["sessions"] == {"s1": {"ttl_ms": 60000, "keys": ["k"]}}
    assert layout.chain_state(parts, 1) is None


def test_newer_schemas_and_foreign_data_are_refused():
    with pytest.raises(CatenaError, match="schema version 99"):
        layout.check({layout.LEGACY: {**legacy(), "schema": 99}}, "here")
    with pytest.raises(CatenaError, match="schema version 3"):
        layout.check({**two_chains(), "cluster": {"schema": 3, "cluster_id": "c1"}}, "here")
    with pytest.raises(CatenaError, match="does not hold catena coordinator state"):
        layout.check({"slots": {}}, "here")
    with pytest.raises(CatenaError, match="cluster c1, not of cluster c2"):
        layout.check(two_chains(), "here", "c2")


def test_changed_names_only_the_parts_that_differ_and_deletes_ended_sessions():
    before = layout.chain_state(two_chains(), 0)
    after = json.loads(json.dumps(before))
    after["views"][0][1] += 1
    del after["sessions"]["s1"]
    assert layout.changed(before, after) == {"chains/0": {**layout.parts_of(after)["chains/0"]}, "sessions/s1": None}
    assert set(layout.changed(None, after)) == {"chains/0", "cluster"}


def _lead(parts: dict, chain_id: int) -> tuple[CoordinatorMachine, list]:
    m = CoordinatorMachine(chain_id=chain_id)
    return m, m.lead(0.0, layout.chain_state(parts, chain_id))


def test_a_failure_in_one_chain_saves_its_part_only_and_leaves_the_other_chain_alone():
    parts = two_chains()
    m0, fx0 = _lead(parts, 0)
    m1, fx1 = _lead(parts, 1)
    assert {p.member for p in fx0 if isinstance(p, Probe)} == {"a:1", "b:1", "c:1"}
    assert {p.member for p in fx1 if isinstance(p, Probe)} == {"x:1", "y:1", "z:1"}
    nonce = next(p.nonce for p in fx1 if isinstance(p, Probe) and p.member == "y:1")
    m1.on_probe_failed("y:1", nonce, 0.1, refused=True)
    nonce = next(p.nonce for p in m1.on_timer(0.5) if isinstance(p, Probe) and p.member == "y:1")
    out = m1.on_probe_failed("y:1", nonce, 0.6, refused=True)  # refused twice: confirmed
    assert any(isinstance(f, Fail) for f in out)
    (save,) = [f for f in out if isinstance(f, Save)]
    assert set(save.parts) == {"chains/1"}  # not chain 0's, not the cluster's, not a session's
    assert save.parts["chains/1"]["view"] == [1, 10, ["x:1", "z:1"], None]
    m1.on_save_result(True, 0.7)
    assert m1.view.epoch == 10 and m0.view.epoch == 4 and m0.view.members == ("a:1", "b:1", "c:1")
    assert not any(isinstance(f, Save) for f in m0.on_timer(0.7))


def test_the_embedded_store_migrates_a_schema_1_file_and_writes_parts_in_place(tmp_path):
    (tmp_path / "coordinator.json").write_text(json.dumps({**legacy(), "term": 3}))
    store = EmbeddedStore(tmp_path)
    assert store.fence == 4 and layout.chain_state(store.load(), 0)["views"][0][1] == 4
    chain1 = {k: v for k, v in two_chains().items() if k == "chains/1"}
    store.write(chain1)
    store.write({"sessions/s1": None})
    saved = json.loads((tmp_path / "coordinator.json").read_text())
    assert saved["schema"] == layout.SCHEMA and saved["term"] == 4
    assert sorted(saved["parts"]) == ["chains/0", "chains/1", "cluster"]
    assert EmbeddedStore(tmp_path).load() == saved["parts"]
    (tmp_path / "coordinator.json").write_text(json.dumps({"schema": 3, "term": 1, "parts": saved["parts"]}))
    with pytest.raises(CatenaError):
        EmbeddedStore(tmp_path)


def test_the_coordinator_resigns_only_when_cut_off_from_every_chain():
    """Chain 1's members all stop answering: its machine would resign, but chain 0's answer, so
    the process does not (a standby would find chain 1 dead too); once chain 0's fail as well,
    it does."""
    parts = two_chains()
    (m0, fx0), (m1, fx1) = _lead(parts, 0), _lead(parts, 1)

    def fail_all(m, fx, now):
        out = []
        for p in [f for f in fx if isinstance(f, Probe)]:
            out += m.on_probe_failed(p.member, p.nonce, now)
        return out

    out = fail_all(m1, fx1, 0.6)
    out = fail_all(m1, m1.on_timer(0.7), 1.2)
    assert m1.cut_off and any(isinstance(f, Resign) for f in out)
    assert not may_resign([m0, m1])
    fail_all(m0, fx0, 0.6)
    assert m0.cut_off and may_resign([m0, m1])
