"""TCP options for catena's own connections: a dead peer is found within ~2 s.

Peer links and coordinator connections stay open for long; after a partition heals, a
connection that still had unacknowledged bytes would otherwise sit in the kernel's
retransmission backoff (the RTO doubles up to 2 min) long after the network came back, and an
idle one would never notice that its peer is gone. With these options the kernel gives up on
such a connection after `DEAD_AFTER_MS` (TCP_USER_TIMEOUT: data unacknowledged that long; with
keepalive probes from 1 s of silence on, an idle connection whose probes go unanswered too),
the reader sees an error, and the owner reconnects at once.

Applied to every outbound connection (`catena.resp.client.open_tcp`) and to accepted peer links
and coordinator connections; not to data clients' connections, where a slow reader must not be
cut off after 2 s.
"""

from __future__ import annotations

import socket

DEAD_AFTER_MS = 2000
KEEPIDLE_S, KEEPINTVL_S, KEEPCNT = 1, 1, 2


def detect_dead_peer(sock: socket.socket | None) -> None:
    """Set keepalive and TCP_USER_TIMEOUT on a TCP socket (a no-op for others, or where the
    platform lacks an option)."""
    if sock is None or sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", KEEPIDLE_S), ("TCP_KEEPINTVL", KEEPINTVL_S), ("TCP_KEEPCNT", KEEPCNT),
                        ("TCP_USER_TIMEOUT", DEAD_AFTER_MS)):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)
