"""PUBLISH through the chain (catena.chain.pubsub): every member delivers a message once the
entry is committed, in the chain's order, and a PUBLISH inside EXEC with its transaction."""

from __future__ import annotations

from catena.chain.transactions import EXEC_CMD, encode
from catena.effects import Deliver
from test_replica import E, Cluster, chain3


class Recording(Cluster):
    def run(self, name, fx):
        for f in fx:
            if type(f) is Deliver:
                self.delivered.setdefault(name, []).append((f.channel, f.message))
        return super().run(name, fx)


def recording_chain3():
    c = chain3()
    c.__class__ = Recording
    c.delivered = {}
    return c


def test_every_member_delivers_a_message_only_once_it_is_committed_in_the_chains_order():
    c = recording_chain3()
    c.client("c", "p1", "PUBLISH", "news", "one")
    c.client("a", "p2", "PUBLISH", "news", "two")
    while c.queue and "b" not in c.delivered:
        src, dst, msg = c.deliver_one()
        if c.r["c"].commit_seq < 1:
            assert c.delivered == {}  # nothing before the tail applied it
    c.settle()
    order = c.delivered["a"]  # the head's order (p2 came first: p1 was still on its way from c)
    assert sorted(order) == [(b"news", b"one"), (b"news", b"two")]
    assert c.delivered == {m: order for m in "abc"}
    assert c.replies["p1"] == c.replies["p2"] == 0  # the machine's count; the shell counts its receivers


def test_a_publish_inside_exec_is_delivered_with_its_transaction():
    c = recording_chain3()
    c.client("b", "x", EXEC_CMD, *encode({}, [[b"SET", b"k", b"v"], [b"PUBLISH", b"ch", b"m"]]))
    c.settle()
    assert c.replies["x"] == [c.replies["x"][0], 0]
    assert all(c.delivered[m] == [(b"ch", b"m")] for m in "abc")


def test_a_new_tail_delivers_what_it_commits_on_taking_over():
    c = recording_chain3()
    c.client("a", "p", "PUBLISH", "ch", "m")
    c.deliver_one()  # a -> b: the tail never gets it
    c.queue.clear()
    del c.r["c"]
    c.view(E + 1, ("a", "b"))
    c.settle()
    assert c.delivered["b"] == [(b"ch", b"m")] and c.delivered["a"] == [(b"ch", b"m")]
    assert c.replies["p"] == 0
