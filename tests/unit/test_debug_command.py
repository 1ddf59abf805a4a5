"""DEBUG at a member (catena.chain.debug): refused unless enabled, as in Redis 7."""

from catena.chain.debug import NOT_ALLOWED, debug_command
from catena.resp.codec import OK, Error


def test_debug_is_refused_unless_enabled():
    assert debug_command(False)(None, [b"DEBUG", b"SLEEP", b"0"]) is NOT_ALLOWED


def test_debug_sleep_checks_its_argument():
    debug = debug_command(True)
    assert debug(None, [b"DEBUG", b"sleep", b"0"]) == OK
    assert debug(None, [b"DEBUG", b"SLEEP", b"0.001"]) == OK
    for bad, text in ((b"x", "ERR value is not a valid float"), (b"nan", "ERR value is not a valid float"),
                      (b"-1", "ERR DEBUG SLEEP takes 0 to 3600 seconds"),
                      (b"1e9", "ERR DEBUG SLEEP takes 0 to 3600 seconds")):
        reply = debug(None, [b"DEBUG", b"SLEEP", bad])
        assert isinstance(reply, Error) and reply.message == text, (bad, reply)
    reply = debug(None, [b"DEBUG", b"RELOAD"])
    assert isinstance(reply, Error) and "unknown subcommand" in reply.message
