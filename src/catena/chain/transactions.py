"""MULTI/EXEC as one chain entry, and WATCH decided at the head.

A member turns a client's queued commands, with the key versions it observed at WATCH (see
`catena.chain.versions`), into one command, `CATENA.EXEC n k1 v1 … kn vn c1 w… c2 w…` (each
command as its word count, then its words), which travels to the head like any write (forwarded
under a request id, so a re-forward after a head change applies once). The head compares the
versions with its own and, if a watched key was written since, aborts (reply None: a nil EXEC,
answered once everything it saw is committed); otherwise it applies the commands one after the
other, making each random choice just before its command, and replicates the result as one entry:

    (EXEC, seed, (sub, …))    sub: a write op, (READ, (words…)) or (FAIL, error text)

which every member applies atomically, in one step, answering the list of the commands'
replies. Reads inside see the transaction's earlier writes (they are evaluated at apply time on
the entry's timestamp; random picks of reads come from `seed`); a command whose arguments are
wrong answers its error in its place, as Redis's runtime errors do.

A transaction of reads only is `CATENA.EXEC.RO` with the same words, a read: answered by a
member whose copies of its keys (and the watched ones) are committed, else by the tail, like
any read (CRAQ). `CATENA.VERSIONS k…` is the read WATCH makes.
"""

from __future__ import annotations

from catena.chain import ops, state as kv
from catena.chain.values import Lcg
from catena.resp.codec import Error

EXEC, READ, FAIL = 40, 41, 43
EXEC_CMD, EXEC_READS, VERSIONS = b"CATENA.EXEC", b"CATENA.EXEC.RO", b"CATENA.VERSIONS"
COMMANDS = frozenset((EXEC_CMD, EXEC_READS, VERSIONS))  # catena's own: not for data clients
_SEED = 2**63


def encode(watched: dict, commands: list) -> list[bytes]:
    """The words after the command name: watched {key: version} and the queued commands."""
    words = [b"%d" % len(watched)]
    for key, version in watched.items():
        words += [key, b"%d" % version]
    for command in commands:
        words.append(b"%d" % len(command))
        words += command
    return words


def _parse(args):
    """(watches [(key, version)], commands [[words]]) from a CATENA.EXEC's words; ValueError."""
    n, i = int(args[1]), 2
    watches = [(args[i + 2 * j], int(args[i + 2 * j + 1])) for j in range(n)]
    i += 2 * n
    commands = []
    while i < len(args):
        count = int(args[i])
        if count < 1 or i + 1 + count > len(args):
            raise ValueError("a CATENA.EXEC command runs past its words")
        commands.append(list(args[i + 1:i + 1 + count]))
        i += 1 + count
    if n < 0 or any(version < 0 for _, version in watches):
        raise ValueError("a CATENA.EXEC watch is a key and a version")
    return watches, commands


def _sub(command, now_ms: int):
    if not ops.is_write(command):
        return (READ, tuple(command))
    op = ops.to_op(command, now_ms)
    return (FAIL, op.message.encode()) if type(op) is Error else op


def build(args, now_ms: int):
    """At the head: (EXEC, watches, subs); `decide` turns it into the entry's op."""
    try:
        watches, commands = _parse(args)
    except (ValueError, IndexError):
        return Error("ERR malformed CATENA.EXEC")
    flat = tuple(w for key, version in watches for w in (key, version))
    return (EXEC, flat, tuple(_sub(c, now_ms) for c in commands))


def watches_hold(versions, watches) -> bool:
    return all(versions.of(watches[i]) == watches[i + 1] for i in range(0, len(watches), 2))


def at_head(state, op, ts: int, rng):
    """Check the watches and apply: (the entry's op, the replies), or None when a watched key
    changed (nothing applied)."""
    if not watches_hold(state.versions, op[1]):
        return None
    seed = rng.randrange(_SEED)
    decided, replies = [], []
    reads = Lcg(seed)
    for sub in op[2]:
        if sub[0] not in (READ, FAIL):
            sub = ops.decide(state, sub, ts, rng)
        decided.append(sub)
        replies.append(_run(state, sub, ts, reads))
    return (EXEC, seed, tuple(decided)), replies


def apply(state, op, ts: int):
    reads = Lcg(op[1])
    return [_run(state, sub, ts, reads) for sub in op[2]]


def _run(state, sub, ts: int, reads):
    kind = sub[0]
    if kind == READ:
        return ops.read(state, list(sub[1]), ts, reads)
    if kind == FAIL:
        return Error(sub[1].decode(errors="replace"))
    return state.apply(sub, ts)


def _shape(op) -> bool:
    return len(op) == 3 and type(op[1]) is int and type(op[2]) is tuple and all(map(_sub_shape, op[2]))


def _sub_shape(sub) -> bool:
    if type(sub) is not tuple or not sub:
        return False
    if sub[0] == READ:
        return len(sub) == 2 and type(sub[1]) is tuple and len(sub[1]) > 0 and all(type(w) is bytes for w in sub[1])
    if sub[0] == FAIL:
        return len(sub) == 2 and type(sub[1]) is bytes
    return sub[0] != EXEC and kv.valid_op(sub)


def _keys(op) -> tuple:
    return tuple(k for sub in op[2] if sub[0] not in (READ, FAIL) for k in kv.op_keys(sub))


# -- reads: WATCH's versions, and transactions of reads only ---------------------------------------


def _reads_keys(args):
    """The keys a read-only transaction touches, watched ones included (None: every key)."""
    try:
        watches, commands = _parse(args)
    except (ValueError, IndexError):
        return ()
    keys = [key for key, _ in watches]
    for command in commands:
        touched = ops.read_keys(command)
        if touched is None:
            return None
        keys += touched
    return tuple(keys)


def _answer_reads(state, args, now_ms: int):
    try:
        watches, commands = _parse(args)
    except (ValueError, IndexError):
        return Error("ERR malformed CATENA.EXEC.RO")
    if not all(state.versions.of(key) == version for key, version in watches):
        return None
    reads = Lcg(now_ms)
    return [ops.read(state, command, now_ms, reads) for command in commands]


kv.extend(EXEC, apply, _shape, _keys)
ops.WRITES[EXEC_CMD] = (-2, build)
ops.READS[EXEC_READS] = (-2, _reads_keys, _answer_reads)
ops.READS[VERSIONS] = (-2, lambda a: tuple(a[1:]), lambda s, a, now: [s.versions.of(k) for k in a[1:]])
