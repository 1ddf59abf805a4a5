"""The pub/sub guard of a command table: a RESP2 client with subscriptions runs only the
subscription commands; with none left (or in RESP3) it runs anything again."""

from catena.resp.codec import PONG, Error
from catena.resp.commands import CommandTable
from catena.resp.pubsub import restricted
from catena.resp.server import Client


def _table() -> CommandTable:
    table = CommandTable()
    table.register(b"GET", lambda client, args: b"v", 2)
    table.guard = restricted
    return table


def test_only_subscribed_resp2_clients_are_restricted():
    table, client = _table(), Client(1, "127.0.0.1:1", True)
    assert table.dispatch(client, [b"GET", b"k"]) == b"v"
    for subscriptions in (client.channels, client.patterns):
        subscriptions.add(b"ch")
        refused = table.dispatch(client, [b"get", b"k"])
        assert type(refused) is Error and refused.message.startswith("ERR Can't execute 'get'")
        assert table.dispatch(client, [b"PING"]) == [b"pong", b""]
        client.resp3 = True
        assert table.dispatch(client, [b"GET", b"k"]) == b"v"
        client.resp3 = False
        subscriptions.clear()
        assert table.dispatch(client, [b"GET", b"k"]) == b"v"
        assert table.dispatch(client, [b"PING"]) is PONG
