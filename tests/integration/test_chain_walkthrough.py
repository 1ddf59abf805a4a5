"""The credis walkthrough of the README, with redis-cli, on free ports."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import HOST, Proc, catena_argv, free_port, free_port_block, port_of, wait_until

pytestmark = pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")


def cli(port: int, *args: str) -> str:
    out = subprocess.run(["redis-cli", "-h", HOST, "-p", str(port), *args], capture_output=True, text=True,
                         timeout=60, check=True)
    return out.stdout.strip()


def test_credis_walkthrough_with_redis_cli(cluster):
    coord = port_of(cluster.start_coordinator())
    m1, m2, m3 = (port_of(cluster.start_member()) for _ in range(3))
    assert cli(coord, "MASTER.ADD", HOST, str(m1)) == "OK"
    assert cli(coord, "MASTER.ADD", HOST, str(m2)) == "OK"
    assert cli(m1, "MEMBER.PUT", "a", "1") == "OK"
    assert cli(coord, "MASTER.ADD", HOST, str(m3)) == "OK"
    assert cli(m3, "GET", "a") == "1"
    assert cli(coord, "MASTER.GET_CHAIN").split() == [f"{HOST}:{p}" for p in (m1, m2, m3)]
    assert cli(coord, "MASTER.HEAD") == f"{HOST}:{m1}"
    assert cli(coord, "MASTER.TAIL") == f"{HOST}:{m3}"
    # The other data commands through redis-cli, at every member.
    for p in (m1, m2, m3):
        assert cli(p, "SET", f"k{p}", "v") == "OK"
        assert cli(p, "INCR", "n").isdigit()
    assert cli(m2, "GET", "n") == "3"
    assert "chain_role:tail" in cli(m3, "INFO")
    assert cli(m1, "DBSIZE") == "5"
    # `catena status` shows the same chain.
    out = subprocess.run([sys.executable, "-m", "catena", "status", "--coordinator", cluster.coordinator],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for p in (m1, m2, m3):
        assert f"{HOST}:{p}" in out.stdout
    assert "head" in out.stdout and "tail" in out.stdout


def _start_up(tmp_path, port: int, members: int, env: dict | None = None) -> Proc:
    """`catena up` with `members` members on `port`…; returns once it says it is up."""
    up = Proc("up", [sys.executable, "-m", "catena", "up", "--members", str(members), "--port", str(port),
                     "--data-dir", str(tmp_path / "up")], tmp_path / "up.log", env=env)
    try:
        wait_until(lambda: "catena is up" in up.log_path.read_text() or not up.alive, 60, "catena up to start")
        assert up.alive, up.log_tail()
    except BaseException:
        up.stop(timeout=20)
        raise
    return up


def test_catena_up_serves_and_stops_on_sigterm(tmp_path):
    port = free_port_block(3)
    up = _start_up(tmp_path, port, 2)
    try:
        # Members register themselves concurrently, so the chain order is not fixed.
        assert sorted(cli(port, "MASTER.GET_CHAIN").split()) == [f"{HOST}:{port + 1}", f"{HOST}:{port + 2}"]
        assert cli(port + 2, "SET", "k", "v") == "OK"
        assert cli(port + 1, "GET", "k") == "v"
        # Secure by default: a random cluster secret in a 0600 file, handed over by file (never
        # in argv), guarding the peer links.
        secret_file = tmp_path / "up" / "secret"
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        secret = secret_file.read_text().strip()
        assert len(secret) == 64
        for p in (port, port + 1, port + 2):
            pid = _listener_pid(p)
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert b"--secret-file" in argv and secret.encode() not in b" ".join(argv)
        assert cli(port + 1, "PEER", f"{HOST}:{port + 2}", "guess").startswith("NOPERM")
        # Each process serves metrics on a port of its own; the table and `catena status` say where.
        urls = re.findall(r"http://[0-9.:]+/metrics", up.log_path.read_text())
        assert len(set(urls)) == 3, up.log_tail()
        for url in set(urls):
            with urllib.request.urlopen(url, timeout=10) as r:
                assert b"catena_" in r.read()
        out = subprocess.run(catena_argv("status", "--coordinator", f"{HOST}:{port}"), capture_output=True,
                             text=True, timeout=60)
        assert sum(url in out.stdout for url in set(urls)) == 2 and "status page http://" in out.stdout, out.stdout
    finally:
        status = up.stop(timeout=20)
    assert status == 0, up.log_tail()
    for p in (port, port + 1, port + 2):  # the children were stopped too
        wait_until(lambda: not _listening(p), 20, f"port {p} to close")


def _listener_pid(port: int) -> int:
    """The PID of the process listening on 127.0.0.1:`port` (from /proc/net/tcp and fd links)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[3] == "0A" and int(f[1].split(":")[1], 16) == port:
            inodes.add(f[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(proc.name)
        except OSError:
            continue
    raise AssertionError(f"nothing listens on port {port}")


def test_catena_up_killed_with_sigkill_takes_its_processes_along(tmp_path):
    port = free_port_block(2)
    up = _start_up(tmp_path, port, 1)
    up.kill9()
    try:
        for p in (port, port + 1):  # the coordinator and the member got SIGTERM when it died
            wait_until(lambda p=p: not _listening(p), 20, f"port {p} to close")
    finally:  # orphans, if it failed: stopped by PID all the same
        for p in (port, port + 1):
            if _listening(p):
                os.kill(_listener_pid(p), signal.SIGKILL)


@pytest.mark.parametrize("missing, argv, extra", [
    ("aetcd", ["get", "k", "--coordinator", "etcd://127.0.0.1:2379/catena"], "catena[etcd]"),
    ("aetcd", ["status", "--coordinator", "etcd://127.0.0.1:2379/catena"], "catena[etcd]"),
    ("aetcd", ["chaos", "--store", "etcd", "--duration", "1", "--out", "."], "catena[etcd]"),
    ("redis", ["chaos", "--duration", "1", "--out", "."], "catena[chaos]"),
])
def test_a_missing_optional_package_exits_2_naming_its_extra(tmp_path, missing, argv, extra):
    code = f"import sys; sys.modules[{missing!r}] = None; from catena.cli import main; sys.exit(main({argv!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert f"pip install '{extra}'" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_etcd_addresses_without_aetcd_fail_with_an_install_hint(tmp_path):
    """Without the optional aetcd package, an etcd:// address is refused up front with a hint,
    not a traceback from inside the running service."""
    code = ("import sys; sys.modules['aetcd'] = None; from catena.cli import main; "
            f"sys.exit(main(['coordinator', '--listen', '{HOST}:{free_port()}', '--store', "
            "'etcd://127.0.0.1:2379/catena']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "pip install 'catena[etcd]'" in out.stderr and "Traceback" not in out.stderr


def test_catena_up_with_a_password(tmp_path):
    """`catena up --requirepass`: every process requires it (handed over by environment, not
    argv), clients and `catena status` use it, and sessions work (the coordinator requires it)."""
    port = free_port_block(2)
    up = _start_up(tmp_path, port, 1, env={**os.environ, "CATENA_REQUIREPASS": "pw-up"})
    try:
        assert "--askpass" in up.log_path.read_text()
        assert cli(port + 1, "GET", "k").startswith("NOAUTH")
        assert b"pw-up" not in Path(f"/proc/{_listener_pid(port + 1)}/cmdline").read_bytes()
        import catena

        with catena.Client(f"{HOST}:{port}", password="pw-up") as client:
            client.open_session(ttl=5.0)
            client.set("s", "1", session=True)
            assert client.get("s") == b"1"
        out = subprocess.run([sys.executable, "-m", "catena", "status", "--coordinator", f"{HOST}:{port}",
                              "--password", "pw-up"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "head+tail" in out.stdout, out.stdout + out.stderr
    finally:
        assert up.stop(timeout=20) == 0, up.log_tail()


def test_protected_mode_refuses_a_reachable_address_without_credentials(tmp_path):
    for who in (["member", "--data-dir", str(tmp_path / "m")], ["coordinator", "--data-dir", str(tmp_path / "c")]):
        out = subprocess.run([sys.executable, "-m", "catena", who[0], "--listen", f"0.0.0.0:{free_port()}", *who[1:]],
                             capture_output=True, text=True, timeout=60,
                             env={k: v for k, v in os.environ.items() if k != "CATENA_SECRET"})
        assert out.returncode == 2, out.stderr
        assert "refusing to listen on 0.0.0.0" in out.stderr and "--secret-file" in out.stderr
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())  # refused before touching data


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def test_mass_insertion_with_redis_cli_pipe(cluster):
    members = cluster.start(1) * 2  # head and tail alike
    data = b"".join(b"*3\r\n$3\r\nSET\r\n$6\r\np:%04d\r\n$1\r\nv\r\n" % i for i in range(1000))
    out = subprocess.run(["redis-cli", "-h", HOST, "-p", str(port_of(members[0])), "--pipe"], input=data,
                         capture_output=True, timeout=60)
    assert b"errors: 0, replies: 1000" in out.stdout, out.stdout + out.stderr
    assert cluster.client(members[1]).dbsize() == 1000


def test_catena_up_starts_a_process_again_when_its_metrics_port_was_taken(tmp_path, monkeypatch):
    """A metrics port found free can be taken before the process binds it (another program, a
    parallel test): the process stops at once, and `catena up` starts it again on another port
    instead of failing."""
    from catena import up

    with socket.socket() as held:
        held.bind((HOST, 0))
        held.listen()
        taken_port, spare = held.getsockname()[1], free_port()
        picks = iter([[taken_port], [spare]])
        monkeypatch.setattr(up, "free_ports", lambda n, taken: next(picks))
        log = tmp_path / "member.log"
        proc, metrics = up._spawn_metered(["member", "--listen", f"{HOST}:{free_port()}", "--data-dir",
                                           str(tmp_path / "member")], log, dict(os.environ), set())
    try:
        assert metrics == f"{HOST}:{spare}" and proc.poll() is None
        assert log.read_text().count(up.METRICS_TAKEN) == 1  # the first attempt, stopped at once
        assert urllib.request.urlopen(f"http://{metrics}/metrics", timeout=10).status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
