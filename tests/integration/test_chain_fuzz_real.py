"""A slice of the whole-chain fuzzer through real processes: a coordinator and three `catena`
members on loopback, commands with extreme arguments sent with redis-py; after every batch a
fresh write commits, and every member answers the same DBSIZE, keys and values."""

from catena.fuzz_chain import run_real


def test_the_chain_fuzzer_through_real_processes(tmp_path):
    report = run_real(3000, seed=11, root=tmp_path)
    assert report.failures == [], f"{report.failures} (logs in {tmp_path})"
    assert report.commands == 3000
    assert report.accepted > 800 and report.refused > 300  # both paths crossed the chain (of ~190 commands)
    assert report.keys_compared > 10  # the members' data was compared, not an empty keyspace
