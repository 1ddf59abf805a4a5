"""`catena status`: the chain as the coordinator sees it, and each member as it sees itself."""

from __future__ import annotations

import asyncio

from catena.coordinator.discovery import CoordinatorClient
from catena.errors import CatenaError
from catena.resp.client import ReplyError, call
from catena.view import View


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


async def member_status(addr: str, auth: tuple | None, timeout: float = 1.0) -> dict:
    """A member's MEMBER.STATUS as a dict (str keys; values as the member sent them)."""
    raw = await call(addr, b"MEMBER.STATUS", timeout=timeout, auth=auth)
    return {raw[i].decode(): raw[i + 1] for i in range(0, len(raw), 2)}


async def member_rows(coordinator: str | CoordinatorClient, password: str | None = None,
                      chain_id: int = 0) -> tuple[object, list[list[str]]]:
    """Chain `chain_id`'s view and a row per member. `coordinator`: an address in any form
    discovery accepts (the leader is found), or a client. `password`: the data password members
    (and perhaps the coordinator) require, if any."""
    auth = (b"default", password) if password else None
    client = (coordinator if isinstance(coordinator, CoordinatorClient)
              else CoordinatorClient(coordinator, password=password))
    try:
        view = View.from_words(await client.call(b"MASTER.GET_VIEW", chain_id, timeout=5.0))
    finally:
        if client is not coordinator:
            await client.close()
    rows = [["MEMBER", "ROLE", "EPOCH", "LAST SEQ", "COMMITTED", "SENT LIST", "KEYS", "METRICS"]]
    addrs = list(view.members) + ([view.learner] if view.learner else [])
    for addr in addrs:
        try:
            s = await member_status(addr, auth)
            dec = {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in s.items()}
            rows.append([addr, dec["role"], dec["epoch"], dec["last_seq"], dec["commit_seq"], dec["sent_list"],
                         dec["keys"], dec.get("metrics") or "-"])
        except (OSError, asyncio.TimeoutError, ConnectionError, ReplyError) as exc:
            rows.append([addr, "unreachable", "-", "-", "-", "-", f"({type(exc).__name__})", "-"])
    return view, rows


async def _coordinator_status(client: CoordinatorClient) -> tuple[str, list[str], dict[int, int | None]]:
    """The leader's metrics URL ("" when it serves none), why it repaired chains lately, and its
    chains with their slot counts (None: no slot map)."""
    try:
        raw = await client.call(b"MASTER.STATUS", timeout=2.0)
    except (OSError, asyncio.TimeoutError, ConnectionError, CatenaError, ReplyError):
        return "", [], {0: None}
    status = dict(zip(raw[::2], raw[1::2])) if isinstance(raw, list) else {}
    url, repairs = status.get(b"metrics"), status.get(b"repairs") or []
    slots = status.get(b"slots") or []
    counts = dict(zip(slots[::2], slots[1::2]))
    chains = {row[0]: counts.get(row[0]) for row in status.get(b"chains") or [[0]]}
    return (url.decode() if isinstance(url, bytes) else "",
            [r.decode(errors="replace") if isinstance(r, bytes) else str(r) for r in repairs], chains)


async def print_status(coordinator: str, password: str | None = None) -> int:
    client = CoordinatorClient(coordinator, password=password)
    try:
        metrics, repairs, chains = await _coordinator_status(client)
        tables = [(await member_rows(client, password, chain), slots) for chain, slots in sorted(chains.items())]
    except (OSError, asyncio.TimeoutError, ConnectionError, CatenaError) as exc:
        print(f"catena: cannot reach the coordinator leader at {coordinator}: {exc or type(exc).__name__}")
        return 1
    finally:
        await client.close()
    shown = client.leader if client.leader and client.leader != coordinator else None
    print(f"coordinator {coordinator}" + (f" (leader {shown})" if shown else "")
          + (f"  status page {metrics[:-len('metrics')]}" if metrics else ""))
    for (view, rows), slots in tables:
        print(f"chain {view.chain_id}  epoch {view.epoch}" + (f"  slots {slots}" if slots is not None else ""))
        print(_table(rows))
    if repairs:
        print("recent repairs (newest first):")
        for why in repairs:
            print(f"  {why}")
    return 0
