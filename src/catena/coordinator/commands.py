"""The coordinator's RESP commands (credis names): parse the arguments, check what only a call
can tell (who answers at an address MASTER.ADD names; whether the members require a password
before sessions are allowed), and hand the request to the machine through the shell. Read-only
commands answer from the saved state.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from catena.control import MasterCaughtUp, MasterRegister, address, decode
from catena.coordinator import chain_removal
from catena.coordinator import requests as rq
from catena.coordinator import sessions
from catena.coordinator import slot_map as sm
from catena.coordinator.requests import watched
from catena.resp.client import ReplyError, call
from catena.resp.codec import OK, Error
from catena.resp.commands import ADMIN, DATA, INTERNAL
from catena.slots import parse_ranges
from catena.view import View

IDENTITY_TIMEOUT_S = 1.0  # MASTER.ADD asks the address who it is, within this


def addr_of(args) -> str:
    return address(args[1].decode(errors="replace"), args[2].decode(errors="replace"))


def as_map(raw) -> dict:
    """A map reply (a flat RESP2 list of keys and values) as a dict."""
    return {raw[i]: raw[i + 1] for i in range(0, len(raw) - 1, 2)} if isinstance(raw, list) else {}


class CoordinatorCommands:
    """The handlers, registered on the coordinator's command table."""

    def __init__(self, coord):
        self.c = coord
        table = coord.table
        for name, fn, arity, role in (
            (b"MASTER.ADD", self.add, -3, ADMIN), (b"MASTER.REMOVE", self.remove, 3, ADMIN),
            (b"MASTER.MOVE", self.move, 3, ADMIN), (b"MASTER.SLOTMAP", self.slotmap, 1, DATA),
            (b"MASTER.REMOVECHAIN", self.remove_chain, 2, ADMIN),
            (b"MASTER.REGISTER", self.register, -3, INTERNAL), (b"MASTER.CAUGHT_UP", self.caught_up, 4, INTERNAL),
            (b"MASTER.GET_CHAIN", self.get_chain, -1, DATA),
            (b"MASTER.HEAD", self.head, -1, DATA), (b"MASTER.TAIL", self.tail, -1, DATA),
            (b"MASTER.GET_VIEW", self.get_view, -1, DATA),
            (b"MASTER.SESSION.OPEN", self.session_open, 2, DATA),
            (b"MASTER.SESSION.PING", self.session_ping, 2, DATA),
            (b"MASTER.SESSION.ATTACH", self.session_attach, -3, DATA),
            (b"MASTER.SESSION.CLOSE", self.session_close, 2, DATA),
        ):
            table.register(name, self._leader_only(fn), arity, role=role)
        table.register(b"MASTER.STATUS", self.status, -1)
        table.register(b"MASTER.LEADER", self.leader, 1)

    def _leader_only(self, fn):
        def handler(client, args):
            if not self.c.acting():
                return self.c.not_leader()
            return fn(client, args)
        return handler

    # -- chain membership --------------------------------------------------------------------------

    def register(self, client, args):
        """MASTER.REGISTER host port [incarnation [cluster-id epoch]]: a member started with
        --coordinator announces itself; the reply is the cluster id it must keep."""
        msg: MasterRegister = decode(args)
        if refused := self._chain_refusal(msg.member, msg.chain_id):
            return Error(f"ERR refused: {refused}")
        return self.c.submit(rq.Register(msg.member, msg.incarnation, msg.cluster_id, msg.epoch), msg.chain_id)

    def _chain_refusal(self, member: str, chain_id: int) -> str | None:
        """Why `member` cannot be in chain `chain_id` (None: it can): it is in another chain,
        or the chain does not exist and this coordinator keeps one chain."""
        known = self.c.chain_of(member)
        if known is not None and known != chain_id:
            return f"{member} is a member of chain {known}"
        if str(chain_id) in sm.removed(self.c.shards.slot_map):
            return f"chain {chain_id} was removed (MASTER.REMOVECHAIN); its id is not used again"
        if chain_id not in self.c.machines and not self.c.cluster_mode:
            return (f"there is no chain {chain_id}: this coordinator keeps one chain (start it with --chains K "
                    "for several)")
        return None

    def _chain_arg(self, args, at: int, default: int = 0) -> int:
        """The chain id in args[at] (absent: `default`); ValueError for a bad one."""
        if len(args) <= at:
            return default
        word = args[at].decode(errors="replace")
        if not word.isdigit() or len(word) > 9:
            raise ValueError(f"bad chain id {word!r}: expected a non-negative integer")
        return int(word)

    def _view_of(self, args):
        """The view a read names: `chain` or a member's address in args[1] (absent: chain 0; a
        member no chain knows: chain 0's, so that a member taken out learns it left, or when it
        names in args[2] a chain that was removed, that chain with no members under the
        removal's epoch, so that its members learn it: chain/removal.py)."""
        if len(args) > 1 and b":" in args[1]:
            chain = self.c.chain_of(args[1].decode(errors="replace"))
            if chain is None and len(args) > 2 and (gone := self._removed_view(self._chain_arg(args, 2))):
                return gone
            return self.c.machines[chain or 0].view
        chain_id = self._chain_arg(args, 1)
        if chain_id not in self.c.machines:
            raise ValueError(f"there is no chain {chain_id}")
        return self.c.machines[chain_id].view

    def _removed_view(self, chain_id: int) -> View | None:
        epoch = sm.removed(self.c.shards.slot_map).get(str(chain_id))
        return None if epoch is None else View(chain_id, epoch, ())

    def caught_up(self, client, args):
        """MASTER.CAUGHT_UP chain_id epoch learner: the tail of that view says its learner caught up."""
        msg: MasterCaughtUp = decode(args)
        m = self.c.machines.get(msg.chain_id)
        if m is not None:
            self.c.execute(m.on_caught_up(msg.epoch, msg.learner, time.monotonic()), m)
        return OK

    def add(self, client, args):
        """MASTER.ADD host port [chain]: add the member as its chain's new tail (chain: the one
        it registered into, else 0)."""
        if len(args) > 4:
            return Error("ERR wrong number of arguments for 'master.add' command")
        addr = addr_of(args)
        chain_id = self._chain_arg(args, 3, self.c.chain_of(addr) or 0)
        if refused := self._chain_refusal(addr, chain_id):
            return Error(f"ERR cannot add {addr}: {refused}")

        async def work():
            if (addr not in watched(self.c.machines.get(chain_id, self.c.machine).view)
                    and (refused := await self._identity_refusal(addr))):
                return Error(f"ERR cannot add {addr}: {refused}")
            return await self.c.submit(rq.Add(addr), chain_id)

        return self.c.spawn(work())

    async def _identity_refusal(self, addr: str) -> str | None:
        """Why `addr` cannot be added (None: it can): a catena member must answer there and know
        itself by that address, the one its peers and views will use (`localhost:P` for a member
        that is `127.0.0.1:P` would never take its place as the learner)."""
        try:
            raw = await call(addr, b"MEMBER.STATUS", timeout=IDENTITY_TIMEOUT_S, auth=self.c.auth)
        except ReplyError as exc:
            return f"it does not answer as a catena member ({exc})"
        except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
            return f"no catena member answers there ({type(exc).__name__}: {exc or 'no answer'})"
        me = as_map(raw).get(b"me")
        if not isinstance(me, bytes):
            return "it does not answer as a catena member (no identity in its MEMBER.STATUS)"
        if me.decode() != addr:
            return f"the member there knows itself as {me.decode()}; add it by that address"
        return None

    def remove(self, client, args):
        addr = addr_of(args)
        return self.c.submit(rq.Remove(addr), self.c.chain_of(addr) or 0)

    # -- slots ---------------------------------------------------------------------------------------

    def move(self, client, args):
        """MASTER.MOVE slot|first-last chain: move the slots to the chain, one at a time (each a
        saved intent a new leader finishes or undoes); the reply is how many moved."""
        slot_map = self.c.shards.slot_map
        if slot_map is None:
            return Error("ERR no slot map: this coordinator keeps one chain (start it with --chains K)")
        try:
            ((first, last),) = parse_ranges(args[1])
        except ValueError:
            return Error(f"ERR bad slot range {args[1].decode(errors='replace')!r}: expected slot or first-last "
                         "within 0-16383")
        target = self._chain_arg(args, 2)
        if refused := sm.move_refusal(slot_map, target):
            return Error(refused)

        async def work():
            moved = await self.c.mover.move(first, last, target)
            return Error(moved) if isinstance(moved, str) else moved

        return self.c.spawn(work())

    def remove_chain(self, client, args):
        """MASTER.REMOVECHAIN chain: drop a chain that owns no slots (chain_removal.py)."""
        return self.c.spawn(chain_removal.remove_chain(self.c, self._chain_arg(args, 1)))

    def slotmap(self, client, args):
        """MASTER.SLOTMAP: the map's version, then per chain its id and its ranges
        (`first-last,…`, `-` for none); nil without a map."""
        slot_map = self.c.shards.slot_map
        if slot_map is None:
            return None
        return [slot_map["version"], *(x for chain in sorted(int(c) for c in slot_map["chains"])
                                       for x in (chain, sm.word(sm.ranges(slot_map, chain))))]

    # -- reads (each names a chain, or a member of one; chain 0 by default) -------------------------

    def get_chain(self, client, args):
        return list(self._view_of(args).members)

    def head(self, client, args):
        return self._view_of(args).head

    def tail(self, client, args):
        return self._view_of(args).tail

    def get_view(self, client, args):
        return self._view_of(args).words()

    def status(self, client, args):
        """Answered by every coordinator: a follower shows its warm copy of the saved state."""
        c = self.c
        v, saved, role = c.view, c.machine.saved, "leader" if c.acting() else "follower"
        return {"chain_id": v.chain_id, "epoch": v.epoch, "members": list(v.members), "learner": v.learner,
                "queued": list(saved.queued), "fence": c.store.fence if role == "leader" else 0,
                "role": role, "leader": c.me if role == "leader" else c.store.leader,
                "cluster_id": saved.cluster_id, "store": str(c.store), "metrics": c.metrics.url,
                "repairs": [e["text"] for e in c.metrics.events.recent(50) if e["kind"] in ("repair", "damping")][:5],
                "chains": [[m.view.chain_id, m.view.epoch, ",".join(m.view.members), m.view.learner or "-"]
                           for _, m in sorted(c.machines.items())],
                "slots": self._slots()}

    def _slots(self) -> list:
        """Per chain its slot count in the map, as a flat list (chain, count, …); empty without a map."""
        slot_map = self.c.shards.slot_map
        return [] if slot_map is None else [x for chain in sorted(self.c.machines)
                                            for x in (chain, sm.count(slot_map, chain))]

    def leader(self, client, args):
        """MASTER.LEADER: the leader's address as this coordinator knows it (nil: none known)."""
        return self.c.me if self.c.acting() else self.c.store.leader

    # -- client sessions ---------------------------------------------------------------------------

    def session_open(self, client, args):
        """MASTER.SESSION.OPEN ttl_ms: a new session; the reply is its id. Its TTL runs from now."""
        ttl_ms = sessions.check_ttl_ms(args[1])

        async def work():
            if refused := await self._sessions_unguarded():
                return Error(refused)
            return await self.c.submit(rq.OpenSession(uuid.uuid4().hex, ttl_ms))

        return self.c.spawn(work())

    async def _sessions_unguarded(self) -> str | None:
        """A session's keys are deleted with catena's own credential, so only a caller who could
        write them may attach them: when the members require a password, so must we (the same
        one, given with --requirepass). Why sessions are refused, or None."""
        head = self.c.view.head
        if self.c.table.password is not None or head is None:
            return None
        try:
            raw = await call(head, b"MEMBER.STATUS", timeout=1.0, auth=self.c.auth)
        except (OSError, asyncio.TimeoutError, ConnectionError, ReplyError) as exc:
            return f"TRYAGAIN cannot tell whether the members require a password ({exc or type(exc).__name__})"
        if as_map(raw).get(b"requirepass"):
            return ("NOPERM the members require a password and this coordinator has none: sessions would let "
                    "anyone delete their keys; start the coordinator with the members' --requirepass")
        return None

    def session_ping(self, client, args):
        """MASTER.SESSION.PING id: OK, or `-ERR no such session` (expired, closed or unknown)."""
        alive = self.c.machine.session_ping(args[1].decode(errors="replace"), time.monotonic())
        return OK if alive else Error(sessions.NO_SUCH_SESSION)

    def session_attach(self, client, args):
        """MASTER.SESSION.ATTACH id key…: bind keys to a live session (also counts as a ping)."""
        return self.c.submit(rq.Attach(args[1].decode(errors="replace"), tuple(args[2:])))

    def session_close(self, client, args):
        """MASTER.SESSION.CLOSE id: delete the session's keys (through the chain), then drop it."""
        return self.c.submit(rq.CloseSession(args[1].decode(errors="replace")))
