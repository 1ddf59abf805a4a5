"""INFO's section choice and COMMAND's key positions (catena.chain.info, catena.resp.command_info)."""

from catena.chain.info import sections
from catena.resp import command_info


def test_info_sections_as_redis_chooses_them():
    assert "commandstats" not in sections([b"INFO"]) and "catena" in sections([b"INFO"])
    assert sections([b"INFO", b"KEYSPACE"]) == ["keyspace"]
    assert sections([b"INFO", b"cpu", b"sentinel"]) == ["cpu"]
    assert "commandstats" in sections([b"INFO", b"everything"])
    everything = sections([b"INFO", b"cpu", b"all"])
    assert len(everything) == len(set(everything)) and "memory" in everything
    assert sections([b"INFO", b"commandSTATS"]) == ["commandstats"]


def test_keys_from_positions_and_from_key_counts():
    assert command_info.keys(b"MSET", [b"MSET", b"a", b"1", b"b", b"2"]) == [b"a", b"b"]
    assert command_info.keys(b"DEL", [b"DEL", b"a", b"b"]) == [b"a", b"b"]
    assert command_info.keys(b"ZUNIONSTORE", [b"ZUNIONSTORE", b"d", b"2", b"a", b"b", b"WEIGHTS", b"1", b"2"]) == [
        b"d", b"a", b"b"]
    assert command_info.keys(b"BLMPOP", [b"BLMPOP", b"0", b"2", b"x", b"y", b"LEFT"]) == [b"x", b"y"]
    assert command_info.keys(b"LMPOP", [b"LMPOP", b"5", b"x", b"LEFT"]) is None  # the count runs past the words
    assert command_info.keys(b"PING", [b"PING"]) == []
    assert command_info.keys(b"NOPE", [b"NOPE"]) is None


def test_every_described_command_has_a_sane_line():
    for name, i in command_info.COMMANDS.items():
        assert i.name.upper().encode() == name and i.arity != 0
        assert (i.first, i.last, i.step) == (0, 0, 0) or i.first >= 1
        assert set(i.flags) <= {"write", "readonly", "denyoom", "admin", "pubsub", "noscript", "blocking", "loading",
                                "stale", "skip_monitor", "skip_slowlog", "fast", "no_auth", "may_replicate",
                                "sentinel", "no_mandatory_keys", "no_async_loading", "no_multi", "movablekeys",
                                "allow_busy", "asking"}, name


def test_patterns_match_channels_as_globs():
    from catena.resp.pubsub import _matches
    assert _matches(b"foo.*", b"foo.1") and not _matches(b"foo.*", b"bar.1")
    assert _matches(b"*", b"anything") and _matches(b"ch?", b"ch1") and not _matches(b"ch?", b"ch12")
