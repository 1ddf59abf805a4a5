"""Asking a member's liveness responder (shell): one datagram out, the answer to it back, within
a deadline. The coordinator asks when a MEMBER.PROBE timed out; its machine decides what the
answer means (busy, wedged, or nothing: a miss).
"""

from __future__ import annotations

import asyncio
import secrets

from catena import liveness


class _Asker(asyncio.DatagramProtocol):
    def __init__(self, nonce: int, secret: bytes | None):
        self.nonce, self.secret = nonce, secret
        self.answered: asyncio.Future = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr) -> None:
        alive = liveness.read_answer(data, self.nonce, self.secret)
        if alive is not None and not self.answered.done():
            self.answered.set_result(alive)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable: nobody there
        if not self.answered.done():
            self.answered.set_result(None)


async def ask(host: str, port: int, secret: bytes | None, timeout_s: float) -> liveness.Alive | None:
    """The member's answer at host:port, or None if none came within `timeout_s`."""
    nonce = secrets.randbits(64)
    loop = asyncio.get_running_loop()
    try:
        transport, asker = await loop.create_datagram_endpoint(lambda: _Asker(nonce, secret),
                                                               remote_addr=(host.strip("[]"), port))
    except OSError:
        return None
    try:
        transport.sendto(liveness.request(nonce, secret))
        async with asyncio.timeout(timeout_s):
            return await asker.answered
    except TimeoutError:
        return None
    finally:
        transport.close()
