"""Disk faults with real processes.

A member's disk fills up under a write load (its data dir is a small tmpfs, filled mid-run): the
member stops with a CRITICAL message and exit status 74, the coordinator removes it, and the rest
of the chain keeps acknowledging writes; once the tmpfs is enlarged and the member restarted, it
rejoins and every acknowledged write is readable at every member. Mounting needs root: skipped
otherwise. Every mount is unmounted (after the processes using it are stopped) whatever the
outcome.

A member whose log was damaged in the middle while it was down keeps the history before the
damage, rejoins and catches up from the chain."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from conftest import CHAIN_TIMEOUT_S, Cluster, addr_of, free_port, wait_until
from repair_helpers import RetryingLoad, registered_chain, wait_rejoined, wait_removed

EXIT_DISK_FAULT = 74
FLOWING_DEADLINE_S = 10.0  # writes flow again after the removal (not a timing test)


def mount_tmpfs(stack: ExitStack, path: Path, size: str) -> None:
    """A tmpfs of `size` at `path`, unmounted when `stack` closes."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    stack.callback(unmount, path)


def unmount(path: Path) -> None:
    if subprocess.run(["umount", str(path)]).returncode != 0:
        subprocess.run(["umount", "--lazy", str(path)], check=True)  # detached now, freed when unused
        raise AssertionError(f"{path} was still in use at the end of the test")


def fill(path: Path) -> int:
    """Write a file in `path` until the file system is full; returns the bytes written."""
    written = 0
    with open(path / "filler", "wb", buffering=0) as f:
        for chunk in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    written += f.write(b"\xff" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return written


def chain_with_small_disk(cluster: Cluster, stack: ExitStack, position: int) -> list[str]:
    """A coordinator and three members that register by themselves (head first); the one at
    `position` keeps its data on a 4 MB tmpfs."""
    cluster.start_coordinator()
    chain: list[str] = []
    for i in range(3):
        port = free_port()
        if i == position:
            mount_tmpfs(stack, cluster.data_dir(addr_of(port)), "4m")
        chain.append(cluster.start_member(port, register=True))
        wait_until(lambda: cluster.chain() == chain, CHAIN_TIMEOUT_S, f"{chain[-1]} to join as tail of {chain}")
    cluster.wait_chain(chain)
    return chain


@pytest.mark.parametrize("role, fsync", [("head", "always"), ("tail", "everysec")])
def test_a_full_disk_stops_the_member_the_chain_goes_on_and_it_rejoins(make_cluster, role, fsync):
    cluster = make_cluster(fsync=fsync)
    with ExitStack() as mounts:
        try:
            check_full_disk(cluster, mounts, ("head", "middle", "tail").index(role))
        finally:
            cluster.close()  # before the unmount: no process may hold the tmpfs then


def check_full_disk(cluster: Cluster, mounts: ExitStack, position: int) -> None:
    """Fill the disk of the member at `position` under a write load, then enlarge it and restart the member."""
    role = ("head", "middle", "tail")[position]
    chain = chain_with_small_disk(cluster, mounts, position)
    victim = chain[position]
    survivors = [a for a in chain if a != victim]
    proc = cluster.procs[victim]
    with RetryingLoad(cluster, chain, prefix=f"full-{role}") as load:
        load.wait_for_acks(100)
        assert fill(cluster.data_dir(victim)) > 0
        filled_at = time.monotonic()
        wait_until(lambda: not proc.alive, CHAIN_TIMEOUT_S, f"{victim} to stop on its full disk")
        assert proc.popen.returncode == EXIT_DISK_FAULT, proc.log_tail()
        message = proc.log_tail()
        assert "CRITICAL" in message and str(cluster.data_dir(victim)) in message and "ENOSPC" in message
        assert wait_removed(cluster, victim) == survivors
        load.wait_flowing_after(filled_at, FLOWING_DEADLINE_S)
        load.wait_for_acks(100)  # the rest of the chain acknowledges writes
        subprocess.run(["mount", "-o", "remount,size=64m", str(cluster.data_dir(victim))], check=True)
        cluster.restart(victim)
        rejoined = wait_rejoined(cluster, victim, 3)
        load.wait_for_acks(50)  # commits now go through the restarted member too
    assert rejoined == survivors + [victim]
    assert len(load.acked) >= 200
    assert_every_ack_everywhere(cluster, rejoined, load)


def assert_every_ack_everywhere(cluster: Cluster, members: list[str], load: RetryingLoad) -> None:
    cluster.wait_converged(members)
    for addr in members:
        lost = load.lost_at(addr)
        assert not lost, f"{addr}: {len(lost)} problems with acknowledged writes, e.g. {lost[:3]}"


def test_a_log_damaged_in_the_middle_keeps_its_prefix_and_catches_up(cluster):
    chain = registered_chain(cluster, 3)
    victim = chain[2]
    with RetryingLoad(cluster, chain, prefix="damaged") as load:
        load.wait_for_acks(200)
        cluster.kill9(victim)
        assert wait_removed(cluster, victim) == chain[:2]
        segment = max((cluster.data_dir(victim) / "log").glob("log.*"))
        data = bytearray(segment.read_bytes())
        middle = len(data) // 2
        data[middle] ^= 0x40  # a bad record, with valid ones after it: a hole
        segment.write_bytes(bytes(data))
        cluster.restart(victim)
        rejoined = wait_rejoined(cluster, victim, 3)
        load.wait_for_acks(50)
    assert rejoined == chain
    log = cluster.procs[victim].log_path.read_text()
    assert f"{segment}: bad record" in log and "followed by a valid record" in log
    assert_every_ack_everywhere(cluster, rejoined, load)
