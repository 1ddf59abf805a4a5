"""A fail-slow member (issue 17): one whose event loop keeps taking 2.2 s turns (DEBUG SLEEP in a
loop, standing in for a starved CPU) answers the probes it can with that slowness; after 5 s of
it the coordinator takes it out of a chain of three, says why in its log and in `catena status`,
while a member merely busy (0.6 s turns, test_busy_members.py) stays.
"""

from __future__ import annotations

import subprocess
import threading
import time

import redis

from conftest import HOST, catena_argv, port_of, wait_until
from repair_helpers import registered_chain

SLOW_TURN_S = 2.2


def test_a_persistently_slow_member_is_taken_out_and_status_says_why(make_cluster):
    cluster = make_cluster()
    members = registered_chain(cluster, 3, [(), (), ("--enable-debug-command", "yes")])
    slow = members[2]
    stop = threading.Event()

    def starve():
        c = redis.Redis(host=HOST, port=port_of(slow), socket_timeout=30)
        while not stop.is_set():
            try:
                c.execute_command("DEBUG", "SLEEP", SLOW_TURN_S)
            except redis.RedisError:
                return
            stop.wait(0.3)  # a gap between turns, in which some probes are answered

    thread = threading.Thread(target=starve, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        wait_until(lambda: slow not in cluster.chain(), 40, f"the coordinator to take the slow {slow} out")
        took = time.monotonic() - started
    finally:
        stop.set()
        thread.join(timeout=40)
    print(f"fail-slow member taken out {took:.1f} s after its turns became slow")
    assert "is fail-slow (event-loop turns up to 2." in cluster.logs(400)
    status = subprocess.run(catena_argv("status", "--coordinator", cluster.coordinator), capture_output=True,
                            text=True, timeout=30)
    assert "fail-slow" in status.stdout, status.stdout + status.stderr
