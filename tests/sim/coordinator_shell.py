"""How a simulation executes a `CoordinatorMachine`'s effects against simulated members: the
simulators' copy of service.py's `execute` and calls.py, shared by cluster_sim.py (one chain)
and shard_sim.py (a machine per chain), so that both run the machine the same way.

`MachineShell` is a mixin. It works on a *seat* `c`: anything with `machine`, `timer_at`,
`timer_gen` and `replies` (a coordinator process in cluster_sim.py, one chain's machine of a
leader's term in shard_sim.py). `Probe`s reach the member's `member_probe`, `Revoke`s
`member_revoke`, `Push`es `member_view`, `AskTail`s `member_status`; each outcome goes back to
the machine's matching input. The simulator says how these travel and where the machine's
inputs run (`machine_call`, `machine_at`: a call whose seat's term ended, or whose process
crashed, reports nothing), how the fenced `Save` is made (`save_state`), and how it resigns.
"""

from __future__ import annotations

from dataclasses import dataclass

from catena.coordinator.effects import (NOT_LEADER, AbandonAdd, AskTail, CaughtUp, Cut, DeleteKeys, Fail, Note, Probe,
                                        Push, Reply, Resign, Restarted, Revoke, Save)

REFUSED, TIMEOUT, NOTLEADER = "refused", "timeout", "notleader"  # failed calls answer these
VERDICT_STATS = {Fail: "probe confirmed failure", AbandonAdd: "add rolled back", Restarted: "restart verdict",
                 CaughtUp: "learner caught up", Cut: "link cut verdict"}


@dataclass
class Shell:
    """A member process's coordinator loop (node.py's): registered yet, a poll under way."""
    inc: int
    registered: bool = False
    polling: bool = False
    poll_token: int = 0


class MachineShell:
    """service.py's `_execute` for the simulators; see the module's docstring for the hooks."""

    revoke_leases = True  # False: revokes are skipped, as if answered (a planted fault)

    # -- hooks the simulator provides ---------------------------------------------------------------

    def machine_call(self, c, member: str, at_member, answered, timeout_s: float) -> None:
        """Call `member`: `at_member(respond)` runs there; `answered(value)` back at seat `c`
        (the value, REFUSED or TIMEOUT), unless its term ended first."""
        raise NotImplementedError

    def machine_at(self, c, when: float, fn, *args) -> None:
        """Run `fn(c, *args)` at `when` as seat `c`'s process (dropped if it crashed)."""
        raise NotImplementedError

    def save_state(self, c, fx: Save) -> None:
        """The fenced save; its outcome goes to `c.machine.on_save_result`."""
        raise NotImplementedError

    def resign(self, c, fx: Resign) -> None:
        self.stats["coordinator resigned"] += 1

    def verdict(self, c, fx) -> None:
        self.stats[VERDICT_STATS[type(fx)]] += 1
        self.log(f"{getattr(c, 'name', c)}: verdict {fx}")

    # -- the effects ----------------------------------------------------------------------------------

    def machine_fx(self, c, effects: list) -> None:
        """Execute the machine's effects as service.py's `_execute` does, then re-arm its timer."""
        for fx in effects:
            kind = type(fx)
            if kind is Probe:
                self.send_probe(c, fx)
            elif kind is AskTail:
                self.ask_tail(c, fx)
            elif kind is Revoke:
                self.send_revoke(c, fx)
            elif kind is Save:
                self.save_state(c, fx)
            elif kind is Push:
                self.push(c, fx)
            elif kind is Reply:
                respond = c.replies.pop(fx.token, None)
                if respond is not None:
                    respond(NOTLEADER if fx.error == NOT_LEADER else fx.error or fx.value)
            elif kind is Note:
                self.log(f"{getattr(c, 'name', c)}: {fx.text}")
                self.stats["coordinator suspected itself"] += "may be the one cut off" in fx.text
            elif kind is Resign:  # etcd_store.py: hand over to a standby, sit out a while
                self.resign(c, fx)
            elif kind is DeleteKeys:
                self.fail(f"{getattr(c, 'name', c)} deletes session keys, but the simulation opens no sessions: {fx}")
            else:
                self.verdict(c, fx)
        self.arm_machine(c)

    def arm_machine(self, c) -> None:
        due = c.machine.next_deadline()
        if due is not None and due < c.timer_at:
            c.timer_at, c.timer_gen = due, c.timer_gen + 1
            self.machine_at(c, max(due, self.now), self.machine_timer, c.timer_gen)

    def machine_timer(self, c, gen: int) -> None:
        if gen == c.timer_gen:
            c.timer_at = float("inf")
            self.machine_fx(c, c.machine.on_timer(self.now))

    def submit(self, c, request, respond) -> None:
        """A request (requests.py) for the machine; `respond` gets its reply."""
        token = self.token()
        c.replies[token] = respond
        self.machine_fx(c, c.machine.request(token, request, self.now))

    def send_revoke(self, c, fx: Revoke) -> None:
        """MEMBER.REVOKE (with the planted fault, the call is skipped and taken as answered)."""
        if not self.revoke_leases:
            self.machine_fx(c, c.machine.on_revoked(fx.member, True, self.now))
            return

        def answered(value):
            self.stats["revoked" if value == "OK" else "lease waited out"] += 1
            self.machine_fx(c, c.machine.on_revoked(fx.member, value == "OK", self.now))

        self.machine_call(c, fx.member, lambda respond: self.member_revoke(fx.member, fx.epoch, respond),
                          answered, fx.timeout_s)

    def push(self, c, fx: Push) -> None:
        def answered(value):
            self.machine_fx(c, c.machine.on_pushed(fx.member, fx.view.epoch, value == "OK", self.now))

        self.machine_call(c, fx.member, lambda respond: self.member_view(fx.member, fx.view, respond),
                          answered, fx.timeout_s)

    def send_probe(self, c, fx: Probe) -> None:
        def answered(value):
            if isinstance(value, tuple):
                self.machine_fx(c, c.machine.on_probe_answer(fx.member, fx.nonce, *value[:1], self.now, value[1]))
            else:
                self.machine_fx(c, c.machine.on_probe_failed(fx.member, fx.nonce, self.now, refused=value == REFUSED))

        self.machine_call(c, fx.member,
                          lambda respond: self.member_probe(fx.member, fx.epoch, fx.nonce, fx.grant, respond),
                          answered, fx.timeout_s)

    def ask_tail(self, c, fx: AskTail) -> None:
        def answered(value):
            if isinstance(value, dict):
                self.machine_fx(c, c.machine.on_tail_status(fx, self.now, epoch=value["epoch"],
                                                            caught_up=value["learner_caught_up"] == 1,
                                                            acked=value["learner_acked"]))
            else:
                self.machine_fx(c, c.machine.on_tail_status(fx, self.now))

        self.machine_call(c, fx.tail, lambda respond: self.member_status(fx.tail, respond), answered, fx.timeout_s)

    def caught_up_at(self, c, epoch: int, learner: str) -> None:
        """MASTER.CAUGHT_UP from a tail: its learner holds the chain's history under `epoch`."""
        self.machine_fx(c, c.machine.on_caught_up(epoch, learner, self.now))
