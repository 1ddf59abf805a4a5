"""The loop-turn monitor (catena.loopstats): the longest turn since start, the longest over the
recent window, and the count of turns over the budget, from the heartbeat's lateness."""

import asyncio
import time

from catena.loopstats import INTERVAL_S, WINDOW_S, LoopMonitor


def test_longest_recent_and_slow_turns_from_recorded_lateness():
    clock = [100.0]
    m = LoopMonitor(clock=lambda: clock[0])
    m.record(0.002, 100.0)
    m.record(0.120, 100.5)  # a 120 ms turn
    m.record(0.030, 103.0)
    assert m.info() == ["catena_longest_loop_turn_ms:120.0", "catena_longest_loop_turn_recent_ms:120.0",
                        "catena_loop_turns_over_50ms:1"]
    clock[0] = 100.5 + WINDOW_S  # the long turn left the window; the 30 ms one is still in it
    m.record(0.001, clock[0])
    assert m.info()[:2] == ["catena_longest_loop_turn_ms:120.0", "catena_longest_loop_turn_recent_ms:30.0"]


def test_a_turn_that_holds_the_loop_shows_as_its_length():
    async def main():
        m = LoopMonitor()
        task = asyncio.get_running_loop().create_task(m.run())
        try:
            async with asyncio.timeout(10):
                while not m._seconds:  # the heartbeat is running: it recorded a first beat
                    await asyncio.sleep(0)
            time.sleep(0.2)  # the stimulus: a turn holding the loop for 200 ms
            async with asyncio.timeout(10):
                while m.longest_s < 0.1:
                    await asyncio.sleep(INTERVAL_S)
            assert 0.2 - INTERVAL_S <= m.longest_s <= 1.0
            assert m.slow_turns >= 1
        finally:
            task.cancel()

    asyncio.run(main())
