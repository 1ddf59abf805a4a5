"""TLS with Redis's option names: a coordinator and two members whose RESP ports speak TLS only;
the chain's own links, probes and pushes go over TLS with the node certificate; redis-cli --tls
and redis-py with ssl=True work; a plain-text client and a client without a certificate get
nothing."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess

import pytest
import redis

from conftest import HOST, Proc, catena_argv, free_port, wait_until


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA and one node certificate for 127.0.0.1 (used by servers and clients alike)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=catena test CA", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr",
             "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "node.crt", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    return d


def _tls_args(pki) -> list[str]:
    return ["--tls-cert-file", str(pki / "node.crt"), "--tls-key-file", str(pki / "node.key"),
            "--tls-ca-cert-file", str(pki / "ca.crt")]


def _client(pki, port: int, **kw) -> redis.Redis:
    return redis.Redis(host=HOST, port=port, ssl=True, ssl_ca_certs=str(pki / "ca.crt"),
                       ssl_certfile=str(pki / "node.crt"), ssl_keyfile=str(pki / "node.key"),
                       socket_timeout=10, **kw)


def test_a_chain_over_tls(pki, tmp_path):
    cport, m1, m2 = free_port(), free_port(), free_port()
    coordinator = f"{HOST}:{cport}"
    procs = [Proc("coordinator", catena_argv("coordinator", "--listen", coordinator, "--data-dir",
                                             str(tmp_path / "c"), *_tls_args(pki)), tmp_path / "c.log")]
    try:
        def coordinator_up():
            try:
                return _client(pki, cport).execute_command("MASTER.STATUS") is not None
            except (redis.ConnectionError, OSError):
                return False
        wait_until(coordinator_up, 30, "the coordinator to answer over TLS")
        for p in (m1, m2):  # one at a time: the chain's order is the start order
            procs.append(Proc(f"m{p}", catena_argv("member", "--listen", f"{HOST}:{p}", "--data-dir",
                                                   str(tmp_path / f"m{p}"), "--coordinator", coordinator,
                                                   *_tls_args(pki)), tmp_path / f"m{p}.log"))
            wait_until(lambda p=p: f"{HOST}:{p}".encode() in _client(pki, cport).execute_command("MASTER.GET_CHAIN"),
                       30, f"member {p} to join the chain over TLS")
        head, tail = _client(pki, m1), _client(pki, m2)
        wait_until(lambda: head.set("k", b"over tls") is True, 30, "the chain to serve writes")
        wait_until(lambda: tail.get("k") == b"over tls", 30, "the tail to hold the write")
        # redis-cli --tls with the same certificates
        out = subprocess.run(["redis-cli", "-h", HOST, "-p", str(m2), "--tls", "--cacert", str(pki / "ca.crt"),
                              "--cert", str(pki / "node.crt"), "--key", str(pki / "node.key"), "GET", "k"],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "over tls", out.stderr
        # a plain-text client gets no answer: the port speaks TLS only
        with socket.create_connection((HOST, m1), timeout=5) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            try:
                data = s.recv(100)
            except (ConnectionResetError, TimeoutError):
                data = b""
            assert b"PONG" not in data
        # without a client certificate (tls-auth-clients yes, the default), the handshake fails
        bare = redis.Redis(host=HOST, port=m1, ssl=True, ssl_ca_certs=str(pki / "ca.crt"), socket_timeout=5)
        with pytest.raises((redis.ConnectionError, ssl.SSLError, OSError)):
            bare.ping()
        # catena status speaks TLS too
        out = subprocess.run(catena_argv("status", "--coordinator", coordinator, *_tls_args(pki)),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "tail" in out.stdout, out.stdout + out.stderr
    finally:
        for p in procs:
            p.stop()
