"""The coordinator's confirmation rule (catena.coordinator.health)."""

from catena.coordinator.health import HealthCheck


def test_three_misses_confirm_once_and_an_answer_resets():
    h = HealthCheck(misses_to_fail=3)
    assert [h.result("a", False) for _ in range(5)] == [False, False, True, False, False]
    assert h.result("a", True) is False
    assert [h.result("a", False) for _ in range(3)] == [False, False, True]


def test_a_refusing_port_confirms_sooner_but_timeouts_do_not():
    h = HealthCheck(misses_to_fail=3, refused_to_fail=2)
    assert [h.result("a", False, refused=True) for _ in range(4)] == [False, True, False, False]
    h.forget("a")
    # a timeout between refusals breaks the run of refusals; three misses still confirm
    assert [h.result("a", False, r) for r in (True, False, True)] == [False, False, True]
    assert h.result("b", False) is False and h.result("b", True) is False
