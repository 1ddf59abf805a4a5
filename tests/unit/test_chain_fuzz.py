"""Whole-chain properties (catena.fuzz_chain's pure chain: three Replica machines, the wire codec).

Any command the head accepts is encodable (every Persist and frame is encoded as the member shell
encodes them), replicated, and applied identically by every member; a fresh write commits after
any sequence of commands. Plus a fast slice of `python -m catena.fuzz --target chain`.
"""

import random

from hypothesis import HealthCheck, given, settings, strategies as st

from catena import fuzz
from catena.chain import ops
from catena.chain.messages import Forward
from catena.chain.replica import Replica
from catena.effects import Send
from catena.fuzz_chain import INT_EDGES, MALFORMED, MEMBERS, Commands, PureChain, run_pure
from catena.resp.codec import Error
from catena.view import View

NAMES = sorted(set(ops.WRITES) | set(ops.READS))
OPTIONS = [b"EX", b"PX", b"EXAT", b"PXAT", b"NX", b"XX", b"GT", b"LT", b"GET", b"KEEPTTL", b"COUNT", b"MATCH"]
words = st.one_of(
    st.integers(-(2**70), 2**70).map(lambda n: b"%d" % n),
    st.sampled_from(INT_EDGES).map(lambda n: b"%d" % n),
    st.sampled_from(MALFORMED),
    st.sampled_from(OPTIONS),
    st.binary(max_size=12),
)
commands = st.builds(lambda name, rest: [name, *rest], st.sampled_from(NAMES), st.lists(words, max_size=6))
requests = st.builds(lambda cid, n, low: [b"CATENA.REQ", cid, n, *low], st.binary(max_size=4), words,
                     st.lists(st.integers(0, 2**64).map(lambda n: b"%d" % n), max_size=1))
wrapped = st.one_of(commands, st.builds(lambda req, cmd: req + cmd, requests, commands))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(MEMBERS), wrapped), min_size=1, max_size=12), st.booleans())
def test_accepted_commands_are_encoded_replicated_and_applied_identically(sent, settle_each):
    chain = PureChain()
    tokens = []
    for member, cmd in sent:
        tokens.append(chain.send(member, cmd))
        if settle_each:
            chain.settle()
    chain.settle()  # encodes every Persist and frame: an unencodable entry raises here
    assert all(t in chain.replies for t in tokens), "every command was answered"
    chain.tick(10.0)
    chain.settle()
    chain.check(b"fresh")  # a fresh write commits; every member holds the same state and seq


def test_the_pure_chain_fuzzer_finds_nothing_in_a_fast_slice():
    report = run_pure(10_000, seed=7)
    assert report.failures == []
    assert report.commands == 10_000
    assert report.accepted > 3000 and report.refused > 1000  # both paths are exercised


def test_the_generator_makes_every_command_with_extreme_arguments():
    gen = Commands(random.Random(1))
    made = [gen.command() for _ in range(5000)]
    names = {c[3 if c[0] == b"CATENA.REQ" and not c[3].isdigit() else 4 if c[0] == b"CATENA.REQ" else 0]
             for c in made}
    assert set(ops.WRITES) | set(ops.READS) <= names
    flat = {w for c in made for w in c}
    assert {b"9223372036854775807", b"-9223372036854775808", b"9223372036854775808", b""} <= flat


def test_the_chain_fuzzer_cli_reports_its_figures(capsys):
    assert fuzz.main(["--target", "chain", "--inputs", "500", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "target=chain commands=500" in out and "failures=0 verdict=ok" in out


def test_a_clients_request_number_is_not_the_members_own_watermark():
    """Found by the chain fuzzer: a member forwarding a client's CATENA.REQ with a huge number took
    that number as the watermark of its own request ids, and the head then refused every later
    write it forwarded as 'answered before'."""
    member = Replica("b:2", b"b/2")
    member.on_view(View(0, 1, ("a:1", "b:2")), 1.0)
    member.on_client("t1", [b"CATENA.REQ", b"c1", b"9223372036854775807", b"SET", b"k", b"v"], 1.0)
    [send] = member.on_client("t2", [b"SET", b"x", b"y"], 1.0)
    assert type(send) is Send and type(send.msg) is Forward
    client, n, low = send.msg.rid
    assert client == b"b/2" and low == n


def test_the_wedging_commands_leave_the_chain_serving():
    chain = PureChain()
    wedging = [[b"EXPIRE", b"k", b"9223372036854775807"], [b"EXPIRE", b"k", b"-9223372036854775808"],
               [b"PEXPIREAT", b"k", b"99999999999999999999"], [b"SET", b"k", b"v", b"EX", b"9223372036854775807"],
               [b"INCRBY", b"k", b"99999999999999999999"], [b"DECRBY", b"k", b"-9223372036854775808"],
               [b"SETEX", b"k", b"9223372036854775807", b"v"],
               [b"CATENA.REQ", b"c", b"99999999999999999999", b"99999999999999999999", b"SET", b"k", b"v"]]
    tokens = [chain.send(MEMBERS[0], cmd) for cmd in wedging]
    chain.settle()
    assert all(type(chain.replies[t]) is Error for t in tokens)
    assert chain.head.last_seq == 0
    chain.check(b"after")
