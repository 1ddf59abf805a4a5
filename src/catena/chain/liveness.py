"""The member's liveness responder: a thread with a UDP socket of its own that answers the
coordinator's liveness datagrams (catena/liveness.py) off the event loop, with the process's
incarnation and how its loop turns (the loop monitor's beat count and the age of its current
turn). So a member whose probe answer waits behind a big command still says it is alive and
progressing, while a stopped process (SIGSTOP stops every thread) says nothing, and a wedged
loop shows a turn that never ends.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from catena import liveness
from catena.errors import CatenaError
from catena.loopstats import LoopMonitor

log = logging.getLogger(__name__)


class LivenessResponder:
    def __init__(self, host: str, incarnation: int, monitor: LoopMonitor, secret: bytes | None,
                 port: int = 0, clock=time.monotonic):
        try:
            family = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_DGRAM)[0][0]
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            self.sock.bind((host.strip("[]"), port))
        except OSError as exc:
            raise CatenaError(f"cannot bind the liveness responder to UDP {host}:{port} ({exc.strerror or exc}): "
                              "give another --liveness-port, or 0 for any free one") from None
        self.port = self.sock.getsockname()[1]
        self.incarnation = incarnation
        self.monitor = monitor
        self.secret = secret
        self.clock = clock
        self._thread = threading.Thread(target=self._serve, name="liveness", daemon=True)
        self._stopping = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Close the socket; the thread's blocked receive ends with it."""
        self._stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout=5)

    def alive(self) -> liveness.Alive:
        m = self.monitor
        return liveness.Alive(self.incarnation, m.beats, max(0.0, self.clock() - m.last_beat))

    def _serve(self) -> None:
        while True:
            try:
                data, sender = self.sock.recvfrom(256)
            except OSError:
                return  # closed by stop()
            if self._stopping:
                return
            nonce = liveness.read_request(data, self.secret)
            if nonce is None:
                continue  # not a request of ours (or not signed with our secret): no answer
            try:
                self.sock.sendto(liveness.answer(nonce, self.alive(), self.secret), sender)
            except OSError as exc:
                log.debug("liveness answer to %s: %s", sender, exc)
