"""The election machine (pure): campaign, lease timing from send times, the local deadline,
stepping down on any sign of another term, backoff bounds."""

from __future__ import annotations

import random

from catena.coordinator.election import (
    BACKOFF_MAX_S, DEADLINE_FRACTION, Backoff, Campaign, Election, Lead, Renew, Revoke, StepDown,
)

ME = "127.0.0.1:7001"


def elected(now: float = 0.0, ttl: float = 2.0) -> Election:
    el = Election(ME, random.Random(1))
    assert el.on_leader_key(None, 0, 0, now) == []
    assert el.on_timer(now) == [Campaign()]
    assert el.on_campaign_result(True, 42, 7, ttl, sent_at=now, now=now + 0.01) == [Lead(42)]
    return el


def test_campaign_when_no_leader_key_and_follow_otherwise():
    el = Election(ME, random.Random(1))
    el.on_leader_key("127.0.0.1:7002", 5, 9, 0.0)
    assert el.on_timer(10.0) == [] and el.leader == "127.0.0.1:7002"
    assert el.on_leader_key(None, 0, 0, 11.0) == []
    assert el.on_timer(11.0) == [Campaign()]
    # Someone else won the race: give our unused lease back and follow.
    assert el.on_campaign_result(False, 6, 3, 2.0, 11.0, 11.1, holder="127.0.0.1:7003") == [Revoke(3)]
    assert el.role == "follower" and el.leader == "127.0.0.1:7003" and not el.leading(11.2)


def test_deadline_counts_from_the_send_time_of_the_last_confirmed_renewal():
    el = elected(ttl=2.0)
    assert el.leading(0.5) and el.deadline == DEADLINE_FRACTION * 2.0
    assert el.on_timer(0.7) == [Renew(7)]  # every TTL/3
    # The answer comes back late: the deadline moves from when we sent it, not when it came.
    assert el.on_renewed(7, sent_at=0.7, ttl_left=2, now=1.5) == []
    assert el.deadline == 0.7 + DEADLINE_FRACTION * 2.0


def test_failed_renewals_step_down_at_the_local_deadline_before_the_lease_expires():
    el = elected(ttl=2.0)
    t = 0.0
    effects = []
    while not effects or not isinstance(effects[-1], StepDown):
        t = el.next_deadline()
        effects = el.on_timer(t)
        if effects == [Renew(7)]:
            effects = el.on_renew_failed(7, t)
    assert t == DEADLINE_FRACTION * 2.0 < 2.0  # etcd's lease runs at least until 2.0
    assert isinstance(effects[-1], StepDown) and effects[-1].lease_id == 7
    assert not el.leading(t) and el.role == "follower"


def test_any_sign_of_another_term_steps_down_at_once():
    for poke in (lambda el: el.on_leader_key(None, 0, 0, 0.1),
                 lambda el: el.on_leader_key("127.0.0.1:7002", 99, 5, 0.1),
                 lambda el: el.on_fenced(42, 0.1),
                 lambda el: el.on_renewed(7, 0.05, 0, 0.1)):
        el = elected()
        effects = poke(el)
        assert [type(e) for e in effects] == [StepDown] and not el.leading(0.1)
    el = elected()
    assert el.on_fenced(41, 0.1) == [] and el.leading(0.1)  # an older term's refusal is not ours


def test_a_key_naming_us_that_we_do_not_hold_is_revoked():
    el = Election(ME, random.Random(1))
    assert el.on_leader_key(ME, 5, 77, 0.0) == [Revoke(77)]  # an earlier process on our address
    el = elected()
    assert el.on_leader_key(ME, 42, 7, 0.2) == []  # our own key


def test_slow_campaign_is_not_acted_on():
    el = Election(ME, random.Random(1))
    el.on_leader_key(None, 0, 0, 0.0)
    el.on_timer(0.0)
    effects = el.on_campaign_result(True, 3, 8, 1.0, sent_at=0.0, now=0.9)
    assert [type(e) for e in effects] == [StepDown] and not el.leading(0.9)


def test_backoff_grows_with_jitter_and_stays_bounded():
    b = Backoff(random.Random(3))
    delays = [b.next() for _ in range(40)]
    assert delays[0] < delays[5] and max(delays) <= BACKOFF_MAX_S
    assert len(set(delays)) > 30
    b.reset()
    assert b.next() <= 0.05


def test_a_resigned_leader_gives_its_lease_back_and_sits_out_the_next_campaigns():
    import random as _random

    from catena.coordinator.election import Election, Lead, StepDown
    e = Election("c0", _random.Random(1))
    e.on_timer(0.0)  # campaign
    assert e.on_campaign_result(True, 7, 99, 2.0, 0.0, 0.01) == [Lead(7)]
    fx = e.resign("cut off from the members", 1.0, 2.0)
    assert [type(f) for f in fx] == [StepDown] and fx[0].lease_id == 99 and not e.leading(1.0)
    assert e.resign("again", 1.1, 2.0) == []  # not leading: nothing to give up
    e.on_leader_key(None, 0, 0, 1.2)  # our key is gone: a standby may campaign; we wait
    assert e.next_deadline() == 3.0 and e.on_timer(2.9) == []


def test_a_follower_that_reaches_too_few_members_waits_to_campaign():
    import random as _random

    from catena.coordinator.election import REACH_RECHECK_S, Campaign, Election
    e = Election("c1", _random.Random(2))
    e.on_reach(False, 0.0)
    e.on_leader_key(None, 0, 0, 0.0)  # no leader: due to campaign now
    assert e.on_timer(0.0) == [] and e.next_deadline() == REACH_RECHECK_S
    e.on_reach(True, 0.1)  # it reaches them again: campaign at once
    assert e.next_deadline() == 0.1 and e.on_timer(0.1) == [Campaign()]
