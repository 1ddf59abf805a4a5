"""`catena chaos --target`: the /proc port -> PID mapping, and the refusal of targets it cannot
fault from here."""

from __future__ import annotations

import os
import socket
import time

import pytest

from catena.chaos.cli import main
from catena.chaos.target import Process, TargetError, pid_listening_on
from catena.loopback import free_ports

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs Linux /proc")


def _listener(family: int, host: str) -> tuple[socket.socket, int]:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((host, 0))
    s.listen()
    return s, s.getsockname()[1]


def test_a_listening_port_maps_to_this_process():
    s, port = _listener(socket.AF_INET, "127.0.0.1")
    with s:
        assert pid_listening_on(f"127.0.0.1:{port}") == os.getpid()
        assert pid_listening_on(f"localhost:{port}") == os.getpid()


def test_a_wildcard_listener_serves_loopback():
    s, port = _listener(socket.AF_INET, "0.0.0.0")
    with s:
        assert pid_listening_on(f"127.0.0.1:{port}") == os.getpid()


def test_an_ipv6_listener_maps_too():
    try:
        s, port = _listener(socket.AF_INET6, "::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    with s:
        assert pid_listening_on(f"[::1]:{port}") == os.getpid()


def test_a_port_nobody_listens_on_is_refused():
    port = free_ports(1)[0]
    with pytest.raises(TargetError, match=f"127.0.0.1:{port}: no process listens on port {port}"):
        pid_listening_on(f"127.0.0.1:{port}")


def test_how_a_process_was_started_is_recorded():
    me = Process.of_pid("me", os.getpid())
    assert me.pid == os.getpid() and me.alive
    assert me.cwd == os.getcwd()
    assert me.argv and os.path.basename(me.argv[0]).startswith(("python", "pytest"))
    assert "PATH" in me.env


def test_a_target_on_another_host_is_refused_up_front(tmp_path, capsys):
    started = time.monotonic()
    status = main(["--target", "192.0.2.1:6369", "--duration", "5", "--no-progress", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2
    assert "192.0.2.1:6369 is not an address of this machine" in err
    assert time.monotonic() - started < 5  # refused before any connection attempt
    assert not list(tmp_path.iterdir())


def test_members_or_store_do_not_go_with_target(capsys):
    for flag in (["--members", "5"], ["--store", "etcd"], ["--netns"], ["--chains", "2"]):
        assert main(["--target", "127.0.0.1:6369", *flag]) == 2
        assert "--members, --chains, --store and --netns do not go with --target" in capsys.readouterr().err


def test_chains_must_be_at_least_one(capsys):
    assert main(["--chains", "0"]) == 2
    assert "--chains must be at least 1" in capsys.readouterr().err
