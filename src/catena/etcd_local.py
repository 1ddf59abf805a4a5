"""The command line of a local etcd node (Debian's etcd-server), for the harnesses that start
etcd beside catena on loopback: `catena chaos --store etcd`, the integration tests, the
coordinator-failover benchmark."""

from __future__ import annotations

import shutil

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
TUNED = ("--heartbeat-interval", "50", "--election-timeout", "500")  # etcd then grants 1 s leases


def etcd_argv(name: str, data_dir, client_url: str, peer_url: str, initial_cluster: str, token: str,
              state: str = "new", tuned: bool = False) -> list[str]:
    """One member of an etcd cluster: `initial_cluster` is `name=peer_url,…`; `state` "new" for
    the first start, "existing" when restarting from `data_dir`."""
    return [ETCD, "--name", name, "--data-dir", str(data_dir),
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", initial_cluster, "--initial-cluster-state", state,
            "--initial-cluster-token", token, "--log-level", "warn", "--logger", "zap",
            *(TUNED if tuned else ())]
