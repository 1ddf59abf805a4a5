"""Coordinator address forms and the NOTLEADER / TRYAGAIN redirect form (no I/O)."""

from __future__ import annotations

import pytest

from catena.coordinator.address import AddressError, EtcdAddress, StaticAddress, notleader_error, parse, redirect_of


def test_host_port_lists():
    assert parse("127.0.0.1:6369") == StaticAddress(("127.0.0.1:6369",))
    assert parse(" a:1 , b:02 ") == StaticAddress(("a:1", "b:2"))


def test_etcd_addresses():
    addr = parse("etcd://127.0.0.1:2379,127.0.0.1:22379/catena/prod/")
    assert addr == EtcdAddress(("127.0.0.1:2379", "127.0.0.1:22379"), "/catena/prod")
    assert addr.leader_key == b"/catena/prod/leader" and addr.part_key("chains/0") == b"/catena/prod/chains/0"
    assert addr.range_prefix == b"/catena/prod/"
    assert str(addr) == "etcd://127.0.0.1:2379,127.0.0.1:22379/catena/prod"
    assert parse("ETCD://h:1/p").prefix == "/p"


@pytest.mark.parametrize("text, says", [
    ("", "empty"),
    ("localhost", "'localhost' is not host:port"),
    ("h:0", "'h:0' is not host:port"),
    ("h:70000", "is not host:port"),
    ("a:1,,b:2", "'' is not host:port"),
    ("zk://h:1/p", "unknown scheme 'zk://'"),
    ("etcd://h:1", "needs a key prefix"),
    ("etcd://h:1/", "needs a key prefix"),
    ("etcd:///p", "no etcd endpoint"),
    ("etcd://h:x/p", "'h:x' is not host:port"),
    ("h:1/p", "is not host:port"),
])
def test_malformed_addresses_fail_naming_what_was_given(text, says):
    with pytest.raises(AddressError) as exc:
        parse(text)
    assert says in str(exc.value)
    assert "expected" in str(exc.value) or "prefix" in str(exc.value)


def test_redirect_forms_round_trip():
    assert notleader_error("10.0.0.1:6369") == "NOTLEADER 10.0.0.1:6369"
    assert redirect_of(notleader_error("10.0.0.1:6369")) == (True, "10.0.0.1:6369")
    assert redirect_of(notleader_error(None)) == (True, None)
    assert notleader_error(None).startswith("TRYAGAIN ")
    assert redirect_of("ERR refused: x") == (False, None)
    assert redirect_of("NOTLEADER") == (True, None)
