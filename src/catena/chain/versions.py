"""Key versions for WATCH: the seq of the last entry that wrote each key.

Every member keeps them as it applies entries; the head compares the versions a transaction
observed at WATCH time with its own before it gives the EXEC a seq. The table is a bounded
cache, not replicated state: a key it does not hold has the version `floor`, a seq at or after
every write it forgot (a snapshot's seq after an install, the seq at which the table was last
emptied). A version is therefore never lower than the true one, and any write after it is
higher, so equal versions prove that nothing wrote the key in between; a forgotten key can
only make a WATCH fail that would have passed, never the reverse.
"""

from __future__ import annotations

CAPACITY = 100_000  # keys remembered exactly; past this the table empties and `floor` moves up


class Versions:
    __slots__ = ("seqs", "floor", "last")

    def __init__(self, floor: int = 0):
        self.seqs: dict[bytes, int] = {}
        self.floor = floor
        self.last = floor  # the newest seq that wrote keys: the state holds every write up to it

    def of(self, key: bytes) -> int:
        return self.seqs.get(key, self.floor)

    def touch(self, keys, seq: int) -> None:
        """The entry `seq` wrote `keys`."""
        seqs = self.seqs
        if len(seqs) >= CAPACITY:
            seqs.clear()
            self.floor = seq - 1
        for key in keys:
            seqs[key] = seq
        if keys:
            self.last = seq

    def forget(self, seq: int) -> None:
        """The state now holds everything up to `seq`, with no record of which keys it wrote."""
        self.seqs.clear()
        self.floor = self.last = seq
