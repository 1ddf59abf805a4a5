"""TLS for a process's RESP port and its outbound connections (Redis's option names).

One process-wide setting, made once by the command line: `configure(cert, key, ca,
auth_clients)`. With a certificate, the process's RESP server (clients, peer links, the
coordinator's calls) speaks TLS only, and every outbound connection it opens (peer links,
probes, pushes, discovery) is TLS too, presenting the same certificate and verifying the peer's
against the CA. Membership datagrams stay UDP, authenticated by the cluster secret's HMAC.
"""

from __future__ import annotations

import ssl

from catena.errors import ConfigError

AUTH_CLIENTS = ("yes", "no", "optional")

_server: ssl.SSLContext | None = None
_client: ssl.SSLContext | None = None


def configure(cert: str | None, key: str | None, ca: str | None, auth_clients: str = "yes") -> None:
    """Turn TLS on (a certificate and key given) for this process; `ca` verifies peers."""
    global _server, _client
    if not cert and not key and not ca:
        _server = _client = None
        return
    if auth_clients not in AUTH_CLIENTS:
        raise ConfigError(f"--tls-auth-clients must be one of {', '.join(AUTH_CLIENTS)}")
    try:
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
        client.check_hostname = False  # peers are named by address; the CA vouches for them
        if cert or key:
            if not (cert and key):
                raise ConfigError("TLS needs both --tls-cert-file and --tls-key-file")
            server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            if ca:
                server.load_verify_locations(cafile=ca)
            server.load_cert_chain(cert, key)
            server.verify_mode = {"yes": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "no": ssl.CERT_NONE}[
                auth_clients]
            if server.verify_mode != ssl.CERT_NONE and not ca:
                raise ConfigError("--tls-auth-clients yes|optional needs --tls-ca-cert-file to verify clients")
            client.load_cert_chain(cert, key)
        else:
            server = None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS: cannot load the certificate, key or CA: {exc}") from None
    _server, _client = server, client


def server_context() -> ssl.SSLContext | None:
    return _server


def client_context() -> ssl.SSLContext | None:
    return _client


def add_flags(parser, server: bool = True) -> None:
    """The TLS flags of a command (`server`: it listens; a tool presents its certificate as a client)."""
    parser.add_argument("--tls-cert-file", default=None,
                        help="certificate (PEM)" + (": the RESP port speaks TLS only" if server else ""))
    parser.add_argument("--tls-key-file", default=None, help="the certificate's private key (PEM)")
    parser.add_argument("--tls-ca-cert-file", default=None, help="CA certificate(s) that verify peers (PEM)")
    if server:
        parser.add_argument("--tls-auth-clients", default="yes", choices=AUTH_CLIENTS,
                            help="require (yes), accept (optional) or ignore (no) client certificates")


def configure_from(args) -> None:
    configure(args.tls_cert_file, args.tls_key_file, args.tls_ca_cert_file, getattr(args, "tls_auth_clients", "yes"))
