"""How the coordinator shell makes the machine's calls (effects.py): each over RESP to a member,
or to the config store, with the outcome reported back to the machine as the input it names.
Probes keep one connection per member (a broken one is the machine's to judge) and are timed
for the metrics; a probe's answer names the member's liveness port, which `CheckLiveness` asks,
and carries its link report."""

from __future__ import annotations

import asyncio
import logging
import time

from catena.control import MemberProbe, MemberRevoke, MemberView, decode_answer, encode
from catena.coordinator import layout, liveness
from catena.coordinator.commands import as_map
from catena.coordinator.effects import PUSH_TIMEOUT_S, AskTail, CheckLiveness, DeleteKeys, Probe, Push, Revoke, Save
from catena.coordinator.shards import PushShard, SaveMap, SyncTable
from catena.coordinator.store import ConfigStore, NotLeader
from catena.errors import CatenaError
from catena.resp.client import ReplyError, RespConnection, call
from catena.slots import key_slot

log = logging.getLogger(__name__)
CALL_FAILED = (OSError, asyncio.TimeoutError, ConnectionError, ReplyError)
SYNC_TIMEOUT_S = 5.0  # a chain commits a slot table entry by then


class MemberCalls:
    def __init__(self, store: ConfigStore, auth, metrics, secret: str | None = None):
        self.store, self.auth, self.metrics = store, auth, metrics
        self.cluster = None  # the coordinator: in cluster mode, `head_of_slot(slot)` routes session deletions
        self.secret = secret.encode() if secret else None  # signs liveness datagrams
        self._probe_conns: dict[str, RespConnection] = {}  # member -> the kept probe connection
        self._liveness_ports: dict[str, int] = {}  # member -> its liveness responder's UDP port

    async def run(self, fx: Probe | CheckLiveness | Revoke | AskTail | Save | Push | DeleteKeys, machine) -> list:
        """Make the call `fx` asks for; the machine's effects from its outcome."""
        now = time.monotonic
        if isinstance(fx, Probe):
            return await self._probe(fx, machine)
        if isinstance(fx, CheckLiveness):
            return await self._check_liveness(fx, machine)
        if isinstance(fx, Save):
            parts = fx.parts if fx.parts is not None else layout.parts_of(fx.state)
            return machine.on_save_result(await self.save(parts), now())
        if isinstance(fx, Revoke):
            ok = await self._call(fx.member, fx.timeout_s, *encode(MemberRevoke(fx.epoch))) is not None
            return machine.on_revoked(fx.member, ok, now())
        if isinstance(fx, Push):
            ok = await self._call(fx.member, fx.timeout_s, *encode(MemberView(fx.view))) is not None
            return machine.on_pushed(fx.member, fx.view.epoch, ok, now())
        if isinstance(fx, AskTail):
            status, learner = await asyncio.gather(self._call(fx.tail, fx.timeout_s, b"MEMBER.STATUS"),
                                                   self._call(fx.learner, fx.timeout_s, b"MEMBER.STATUS"))
            status, learner = as_map(status), as_map(learner)
            acked = status.get(b"learner_acked", -1)
            transfer = tuple(s.get(b"state_transfer", 0) for s in (status, learner))  # sent, loaded
            return machine.on_tail_status(fx, now(), epoch=status.get(b"epoch"),
                                          caught_up=status.get(b"learner_caught_up") == 1,
                                          acked=acked if isinstance(acked, int) else -1,
                                          transfer=transfer if all(isinstance(n, int) for n in transfer) else (0, 0))
        return machine.on_keys_deleted(fx.session, fx.batch, await self._delete(fx), now())

    async def _delete(self, fx: DeleteKeys) -> bool:
        """A batch of a session's keys deleted at the head; in cluster mode, each slot's keys at
        the head of the chain the slot map addresses it to, under a request id per slot."""
        if self.cluster is None or not self.cluster.cluster_mode:
            return await self._call(fx.head, fx.timeout_s, b"CATENA.REQ", f"session:{fx.session}", fx.batch, fx.batch,
                                    b"DEL", *fx.keys) is not None
        by_slot: dict[int, list[bytes]] = {}
        for key in fx.keys:
            by_slot.setdefault(key_slot(key), []).append(key)
        for slot, keys in sorted(by_slot.items()):
            if await self._call(self.cluster.head_of_slot(slot) or fx.head, fx.timeout_s, b"CATENA.REQ",
                                f"session:{fx.session}:{slot}", fx.batch, fx.batch, b"DEL", *keys) is None:
                return False
        return True

    async def run_shards(self, fx: SaveMap | SyncTable | PushShard, shards) -> list:
        """Make a call of the cluster mode's (shards.py); its effects from the outcome."""
        now = time.monotonic
        if isinstance(fx, SaveMap):
            return shards.on_saved(await self.save({layout.SLOTS: fx.slot_map, **dict.fromkeys(fx.drop)}), now())
        if isinstance(fx, SyncTable):
            ok = True
            for words in fx.calls:
                ok = ok and await self._call(fx.head, SYNC_TIMEOUT_S, *words) is not None
            return shards.on_synced(fx.chain, ok, now())
        ok = await self._call(fx.member, PUSH_TIMEOUT_S, *fx.words) is not None
        return shards.on_pushed(fx.member, fx.chain, fx.stamp, ok, now())

    async def _call(self, addr: str, timeout: float, *args):
        """A call to a member; None if it failed."""
        try:
            return await call(addr, *args, timeout=timeout, auth=self.auth)
        except CALL_FAILED as exc:
            log.debug("%s to %s: %s", args[0].decode(), addr, exc or type(exc).__name__)
            return None

    async def save(self, parts: dict) -> bool:
        """The fenced write; False when this coordinator does not (or no longer) lead."""
        if not self.store.leading():
            return False
        try:
            await self.store.save(parts)
            return True
        except NotLeader:
            return False
        except (OSError, CatenaError) as exc:
            log.error("saving the coordinator state failed: %s", exc)
            return False

    async def _probe(self, probe: Probe, machine) -> list:
        """MEMBER.PROBE on the member's kept connection (it also renews the member's read lease)."""
        addr, conn = probe.member, self._probe_conns.pop(probe.member, None)
        try:
            if conn is None:
                conn = await RespConnection.open(addr, probe.timeout_s, self.auth)
            sent = time.monotonic()
            answer = decode_answer(await conn.call(*encode(MemberProbe(probe.epoch, probe.nonce, probe.grant)),
                                                   timeout=probe.timeout_s))
            self.metrics.probed(time.monotonic() - sent, True)
        except (*CALL_FAILED, ValueError) as exc:
            self.metrics.probed(0.0, False)
            broken = conn is not None and not isinstance(exc, asyncio.TimeoutError)
            return machine.on_probe_failed(addr, probe.nonce, time.monotonic(),
                                           refused=isinstance(exc, ConnectionRefusedError), broken=broken)
        else:
            self._probe_conns[addr], conn = conn, None  # kept for the next probe
            if answer.liveness_port:
                self._liveness_ports[addr] = answer.liveness_port
            return machine.on_probe_answer(addr, probe.nonce, answer.incarnation, time.monotonic(), answer.links,
                                           answer.slow)
        finally:
            if conn is not None:
                await conn.close()

    async def _check_liveness(self, check: CheckLiveness, machine) -> list:
        """Ask the member's liveness responder (off its event loop) how its process and loop are."""
        addr, port = check.member, self._liveness_ports.get(check.member)
        alive = None if port is None else await liveness.ask(addr.rpartition(":")[0], port, self.secret,
                                                              check.timeout_s)
        if alive is None:
            return machine.on_liveness(addr, check.nonce, time.monotonic())
        log.info("member %s missed its probe but answers liveness (loop beat %d, current turn %.2f s)",
                 addr, alive.beats, alive.turn_s)
        return machine.on_liveness(addr, check.nonce, time.monotonic(), str(alive.incarnation), alive.turn_s)

    def unused(self, probing) -> list[RespConnection]:
        """Take out the kept connections of members no longer `probing(member)` (to be closed)."""
        return [self._probe_conns.pop(a) for a in list(self._probe_conns) if not probing(a)]

    async def close(self) -> None:
        for conn in self._probe_conns.values():
            await conn.close()
        self._probe_conns = {}
