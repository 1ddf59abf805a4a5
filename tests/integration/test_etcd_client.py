"""catena.Client through an etcd:// address, writing all the while the coordinator leader is
killed: no exception reaches the caller, and no write is applied twice."""

import threading

import catena
from conftest import wait_until
from etcd_helpers import etcd, join_chain, make_ha  # noqa: F401 - fixtures


def test_client_on_etcd_discovery_writes_through_a_leader_kill(etcd, make_ha):  # noqa: F811
    ha = make_ha(etcd, coordinators=2)
    first = ha.coordinator
    join_chain(ha, 2, discovery=etcd.url(ha.prefix))
    acked, errors, stop = [], [], threading.Event()

    def writer():
        with catena.Client(etcd.url(ha.prefix), timeout=10) as c:
            while not stop.is_set():
                try:
                    acked.append(c.incr("through-failover"))
                except Exception as exc:  # anything reaching the caller fails the test
                    errors.append(exc)
                    return

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_until(lambda: len(acked) >= 30 or errors, 30, "writes before the kill")
        ha.kill9(first)
        ha.wait_leader(other_than=first)
        before = len(acked)
        wait_until(lambda: len(acked) >= before + 30 or errors, 30, "writes after the new leader")
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors
    assert acked == list(range(1, len(acked) + 1))  # each INCR applied exactly once
