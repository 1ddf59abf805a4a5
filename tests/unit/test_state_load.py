"""A state dump loaded a slice of keys at a time (catena.chain.state_load): the state it makes is
the one KVState.load makes, its slot index already complete; each step loads at most the keys
asked for; anything that is not a state dump is a ValueError and the machine refuses it."""

from __future__ import annotations

import msgpack
import pytest

from catena.chain.messages import Snapshot
from catena.chain.replica import Replica
from catena.chain.state import SET, KVState
from catena.chain.state_load import StateLoad
from catena.effects import PersistSnapshot
from catena.errors import RemoteProtocolError
from catena.slots import key_slot
from catena.view import View


def _state() -> KVState:
    state = KVState()
    for i in range(1000):
        state.apply((SET, b"key:%04d" % i, b"v%d" % i, 10**13 + i if i % 7 == 0 else None, 0), 0)
    state.put(b"{tag}hash", {b"field": b"value"})  # another type of value
    state.dedup[b"client/1"] = {3: (17, b"OK", b"key:0001")}
    state.floors[b"client/1"] = 2
    return state


def _load_all(blob: bytes, n: int) -> tuple[StateLoad, int]:
    load, steps = StateLoad(blob), 0
    while True:
        before = len(load.state.data)
        done = load.step(n)
        steps += 1
        assert len(load.state.data) - before <= n
        if done:
            return load, steps


def test_the_loaded_state_is_the_one_load_makes_with_its_index_complete():
    blob = _state().dump()
    load, steps = _load_all(blob, 100)
    assert steps == 11  # 1001 keys, 100 a step
    want, got = KVState.load(blob), load.state
    assert got.data == want.data
    assert got.expires == want.expires and sorted(got._heap) == sorted(want._heap)
    assert got.dedup == want.dedup and got.floors == want.floors
    assert got.dump() == blob
    assert got.unindexed == []  # nothing left for index_step
    assert got.slot_keys(key_slot(b"key:0042")) >= {b"key:0042"}
    assert sum(len(keys) for keys in got.by_slot if keys) == len(got.data)
    assert load.step(100) is True  # done stays done


def test_an_empty_state_loads_in_one_step():
    load = StateLoad(KVState().dump())
    assert load.step(1) is True
    assert load.state.data == {}


@pytest.mark.parametrize("blob", [
    b"",
    b"not msgpack at all",
    msgpack.packb([1, 2, 3]),  # an array, not of a state's parts
    msgpack.packb([{b"k": b"v"}, {}, {}]),  # three parts
    msgpack.packb([{1: b"v"}, {}, {}, {}]),  # a key that is not bytes
    KVState().dump() + b"\x00",  # bytes after the dump
    _state().dump()[:-5],  # cut short
    msgpack.packb([{b"k": b"v"}, [], {}, {}]),  # deadlines not a map
])
def test_what_is_not_a_state_dump_is_a_value_error(blob):
    with pytest.raises(ValueError):
        load = StateLoad(blob)
        while not load.step(2):
            pass


def test_the_machine_installs_a_completed_load_as_it_installs_the_dump():
    blob = _state().dump()
    view = View(0, 3, ("a", "b"), learner=None)
    installed = []
    for state in (blob, _load_all(blob, 250)[0]):
        replica = Replica("b", b"b/1", epoch=3)
        replica.on_view(view, 0.0)
        fx = replica.on_message("a", Snapshot(3, 2, 500, 480, state), 0.0)
        assert PersistSnapshot(blob) in fx  # the bytes as they came, to store
        assert (replica.last_epoch, replica.last_seq) == (2, 500)
        installed.append(replica.state.dump())
    assert installed == [blob, blob]


def test_the_machine_refuses_a_snapshot_that_is_no_state_dump():
    replica = Replica("b", b"b/1", epoch=3)
    replica.on_view(View(0, 3, ("a", "b"), learner=None), 0.0)
    with pytest.raises(RemoteProtocolError):
        replica.on_message("a", Snapshot(3, 2, 500, 480, b"garbage"), 0.0)
