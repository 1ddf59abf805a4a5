"""What COMMAND, COMMAND INFO/DOCS/GETKEYS/COUNT/LIST tell about each command catena may register.

One line per command, as Redis 7.0 describes it: name, arity, first key, last key, key step,
group, the version that introduced it, flags. Only commands a process actually registers are
shown (`CommandTable.handlers`); one without a line here (catena's own) is shown with its
registered arity, no flags and no keys. Commands whose keys cannot be found from the three key
positions ("movablekeys") name where their key count is in `NUMKEYS`.
"""

from __future__ import annotations

from typing import NamedTuple

_TABLE = """
get 2 1 1 1 string 1.0.0 readonly,fast
set -3 1 1 1 string 1.0.0 write,denyoom
setnx 3 1 1 1 string 1.0.0 write,denyoom,fast
setex 4 1 1 1 string 2.0.0 write,denyoom
psetex 4 1 1 1 string 2.6.0 write,denyoom
getset 3 1 1 1 string 1.0.0 write,denyoom,fast
mset -3 1 -1 2 string 1.0.1 write,denyoom
mget -2 1 -1 1 string 1.0.0 readonly,fast
del -2 1 -1 1 generic 1.0.0 write
unlink -2 1 -1 1 generic 4.0.0 write,fast
incr 2 1 1 1 string 1.0.0 write,denyoom,fast
decr 2 1 1 1 string 1.0.0 write,denyoom,fast
incrby 3 1 1 1 string 1.0.0 write,denyoom,fast
decrby 3 1 1 1 string 1.0.0 write,denyoom,fast
expire -3 1 1 1 generic 1.0.0 write,fast
pexpire -3 1 1 1 generic 2.6.0 write,fast
expireat -3 1 1 1 generic 1.2.0 write,fast
pexpireat -3 1 1 1 generic 2.6.0 write,fast
persist 2 1 1 1 generic 2.2.0 write,fast
exists -2 1 -1 1 generic 1.0.0 readonly,fast
strlen 2 1 1 1 string 2.2.0 readonly,fast
type 2 1 1 1 generic 1.0.0 readonly,fast
ttl 2 1 1 1 generic 1.0.0 readonly,fast
pttl 2 1 1 1 generic 2.6.0 readonly,fast
dbsize 1 0 0 0 server 1.0.0 readonly,fast
debug -2 0 0 0 server 1.0.0 admin,noscript,loading,stale
scan -2 0 0 0 generic 2.8.0 readonly
keys 2 0 0 0 generic 1.0.0 readonly
getex -2 1 1 1 string 6.2.0 write,fast
getdel 2 1 1 1 string 6.2.0 write,fast
incrbyfloat 3 1 1 1 string 2.6.0 write,denyoom,fast
append 3 1 1 1 string 2.0.0 write,denyoom,fast
getrange 4 1 1 1 string 2.4.0 readonly
setrange 4 1 1 1 string 2.2.0 write,denyoom
setbit 4 1 1 1 bitmap 2.2.0 write,denyoom
getbit 3 1 1 1 bitmap 2.2.0 readonly,fast
bitcount -2 1 1 1 bitmap 2.6.0 readonly
bitpos -3 1 1 1 bitmap 2.8.7 readonly
bitop -4 2 -1 1 bitmap 2.6.0 write,denyoom
msetnx -3 1 -1 2 string 1.0.1 write,denyoom
lcs -3 1 2 1 string 7.0.0 readonly
rename 3 1 2 1 generic 1.0.0 write
renamenx 3 1 2 1 generic 1.0.0 write,fast
copy -3 1 2 1 generic 6.2.0 write,denyoom
randomkey 1 0 0 0 generic 1.0.0 readonly
expiretime 2 1 1 1 generic 7.0.0 readonly,fast
pexpiretime 2 1 1 1 generic 7.0.0 readonly,fast
time 1 0 0 0 server 2.6.0 loading,stale,fast
flushdb -1 0 0 0 server 1.0.0 write
flushall -1 0 0 0 server 1.0.0 write
substr 4 1 1 1 string 1.0.0 readonly
touch -2 1 -1 1 generic 3.2.1 readonly,fast
hset -4 1 1 1 hash 2.0.0 write,denyoom,fast
hget 3 1 1 1 hash 2.0.0 readonly,fast
hmget -3 1 1 1 hash 2.0.0 readonly,fast
hgetall 2 1 1 1 hash 2.0.0 readonly
hdel -3 1 1 1 hash 2.0.0 write,fast
hexists 3 1 1 1 hash 2.0.0 readonly,fast
hincrby 4 1 1 1 hash 2.0.0 write,denyoom,fast
hincrbyfloat 4 1 1 1 hash 2.6.0 write,denyoom,fast
hkeys 2 1 1 1 hash 2.0.0 readonly
hvals 2 1 1 1 hash 2.0.0 readonly
hlen 2 1 1 1 hash 2.0.0 readonly,fast
hsetnx 4 1 1 1 hash 2.0.0 write,denyoom,fast
hstrlen 3 1 1 1 hash 3.2.0 readonly,fast
hrandfield -2 1 1 1 hash 6.2.0 readonly
hscan -3 1 1 1 hash 2.8.0 readonly
hmset -4 1 1 1 hash 2.0.0 write,denyoom,fast
sadd -3 1 1 1 set 1.0.0 write,denyoom,fast
srem -3 1 1 1 set 1.0.0 write,fast
smembers 2 1 1 1 set 1.0.0 readonly
sismember 3 1 1 1 set 1.0.0 readonly,fast
smismember -3 1 1 1 set 6.2.0 readonly,fast
scard 2 1 1 1 set 1.0.0 readonly,fast
spop -2 1 1 1 set 1.0.0 write,fast
srandmember -2 1 1 1 set 1.0.0 readonly
smove 4 1 2 1 set 1.0.0 write,fast
sinter -2 1 -1 1 set 1.0.0 readonly
sunion -2 1 -1 1 set 1.0.0 readonly
sdiff -2 1 -1 1 set 1.0.0 readonly
sinterstore -3 1 -1 1 set 1.0.0 write,denyoom
sunionstore -3 1 -1 1 set 1.0.0 write,denyoom
sdiffstore -3 1 -1 1 set 1.0.0 write,denyoom
sintercard -3 0 0 0 set 7.0.0 readonly,movablekeys
sscan -3 1 1 1 set 2.8.0 readonly
lpush -3 1 1 1 list 1.0.0 write,denyoom,fast
rpush -3 1 1 1 list 1.0.0 write,denyoom,fast
lpushx -3 1 1 1 list 2.2.0 write,denyoom,fast
rpushx -3 1 1 1 list 2.2.0 write,denyoom,fast
lpop -2 1 1 1 list 1.0.0 write,fast
rpop -2 1 1 1 list 1.0.0 write,fast
lrange 4 1 1 1 list 1.0.0 readonly
lindex 3 1 1 1 list 1.0.0 readonly
lset 4 1 1 1 list 1.0.0 write,denyoom
llen 2 1 1 1 list 1.0.0 readonly,fast
lrem 4 1 1 1 list 1.0.0 write
linsert 5 1 1 1 list 2.2.0 write,denyoom
ltrim 4 1 1 1 list 1.0.0 write
lpos -3 1 1 1 list 6.0.6 readonly
lmove 5 1 2 1 list 6.2.0 write,denyoom
rpoplpush 3 1 2 1 list 1.2.0 write,denyoom
lmpop -4 0 0 0 list 7.0.0 write,movablekeys
blpop -3 1 -2 1 list 2.0.0 write,noscript,blocking
brpop -3 1 -2 1 list 2.0.0 write,noscript,blocking
blmove 6 1 2 1 list 6.2.0 write,denyoom,noscript,blocking
blmpop -5 0 0 0 list 7.0.0 write,blocking,movablekeys
brpoplpush 4 1 2 1 list 2.2.0 write,denyoom,noscript,blocking
zadd -4 1 1 1 sorted-set 1.2.0 write,denyoom,fast
zincrby 4 1 1 1 sorted-set 1.2.0 write,denyoom,fast
zrem -3 1 1 1 sorted-set 1.2.0 write,fast
zrange -4 1 1 1 sorted-set 1.2.0 readonly
zrangebyscore -4 1 1 1 sorted-set 1.0.5 readonly
zrangebylex -4 1 1 1 sorted-set 2.8.9 readonly
zrevrange -4 1 1 1 sorted-set 1.2.0 readonly
zrevrangebyscore -4 1 1 1 sorted-set 2.2.0 readonly
zrevrangebylex -4 1 1 1 sorted-set 2.8.9 readonly
zrangestore -5 1 2 1 sorted-set 6.2.0 write,denyoom
sort -2 1 1 1 generic 1.0.0 write,denyoom,movablekeys
sort_ro -2 1 1 1 generic 7.0.0 readonly,movablekeys
zrank 3 1 1 1 sorted-set 2.0.0 readonly,fast
zrevrank 3 1 1 1 sorted-set 2.0.0 readonly,fast
zscore 3 1 1 1 sorted-set 1.2.0 readonly,fast
zmscore -3 1 1 1 sorted-set 6.2.0 readonly,fast
zcard 2 1 1 1 sorted-set 1.2.0 readonly,fast
zcount 4 1 1 1 sorted-set 2.0.0 readonly,fast
zlexcount 4 1 1 1 sorted-set 2.8.9 readonly,fast
zpopmin -2 1 1 1 sorted-set 5.0.0 write,fast
zpopmax -2 1 1 1 sorted-set 5.0.0 write,fast
bzpopmin -3 1 -2 1 sorted-set 5.0.0 write,noscript,blocking,fast
bzpopmax -3 1 -2 1 sorted-set 5.0.0 write,noscript,blocking,fast
zremrangebyscore 4 1 1 1 sorted-set 1.2.0 write
zremrangebyrank 4 1 1 1 sorted-set 2.0.0 write
zremrangebylex 4 1 1 1 sorted-set 2.8.9 write
zunion -3 0 0 0 sorted-set 6.2.0 readonly,movablekeys
zinter -3 0 0 0 sorted-set 6.2.0 readonly,movablekeys
zdiff -3 0 0 0 sorted-set 6.2.0 readonly,movablekeys
zunionstore -4 1 1 1 sorted-set 2.0.0 write,denyoom,movablekeys
zinterstore -4 1 1 1 sorted-set 2.0.0 write,denyoom,movablekeys
zdiffstore -4 1 1 1 sorted-set 6.2.0 write,denyoom,movablekeys
zintercard -3 0 0 0 sorted-set 7.0.0 readonly,movablekeys
zrandmember -2 1 1 1 sorted-set 6.2.0 readonly
zmpop -4 0 0 0 sorted-set 7.0.0 write,movablekeys
bzmpop -5 0 0 0 sorted-set 7.0.0 write,blocking,movablekeys
zscan -3 1 1 1 sorted-set 2.8.0 readonly
multi 1 0 0 0 transactions 1.2.0 noscript,loading,stale,fast,allow_busy
exec 1 0 0 0 transactions 1.2.0 noscript,loading,stale,skip_slowlog
discard 1 0 0 0 transactions 2.0.0 noscript,loading,stale,fast,allow_busy
watch -2 1 -1 1 transactions 2.2.0 noscript,loading,stale,fast,allow_busy
unwatch 1 0 0 0 transactions 2.2.0 noscript,loading,stale,fast,allow_busy
publish 3 0 0 0 pubsub 2.0.0 pubsub,loading,stale,fast
subscribe -2 0 0 0 pubsub 2.0.0 pubsub,noscript,loading,stale
unsubscribe -1 0 0 0 pubsub 2.0.0 pubsub,noscript,loading,stale
psubscribe -2 0 0 0 pubsub 2.0.0 pubsub,noscript,loading,stale
punsubscribe -1 0 0 0 pubsub 2.0.0 pubsub,noscript,loading,stale
pubsub -2 0 0 0 pubsub 2.8.0 -
ping -1 0 0 0 connection 1.0.0 fast
echo 2 0 0 0 connection 1.0.0 loading,stale,fast
select 2 0 0 0 connection 1.0.0 loading,stale,fast
client -2 0 0 0 connection 2.4.0 -
config -2 0 0 0 server 2.0.0 -
cluster -2 0 0 0 cluster 3.0.0 -
readonly 1 0 0 0 cluster 3.0.0 loading,stale,fast
readwrite 1 0 0 0 cluster 3.0.0 loading,stale,fast
asking 1 0 0 0 cluster 3.0.0 fast
command -1 0 0 0 server 2.8.13 loading,stale
quit -1 0 0 0 connection 1.0.0 noscript,loading,stale,fast,no_auth,allow_busy
reset 1 0 0 0 connection 6.2.0 noscript,loading,stale,fast,no_auth,allow_busy
acl -2 0 0 0 server 6.0.0 -
auth -2 0 0 0 connection 1.0.0 noscript,loading,stale,fast,no_auth,allow_busy
hello -1 0 0 0 connection 6.0.0 noscript,loading,stale,fast,no_auth,allow_busy
info -1 0 0 0 server 1.0.0 loading,stale
wait 3 0 0 0 generic 3.0.0 noscript
function -2 0 0 0 scripting 7.0.0 -
eval -3 0 0 0 scripting 2.6.0 noscript,stale,skip_monitor,no_mandatory_keys,movablekeys
evalsha -3 0 0 0 scripting 2.6.0 noscript,stale,skip_monitor,no_mandatory_keys,movablekeys
eval_ro -3 0 0 0 scripting 7.0.0 readonly,noscript,stale,skip_monitor,no_mandatory_keys,movablekeys
evalsha_ro -3 0 0 0 scripting 7.0.0 readonly,noscript,stale,skip_monitor,no_mandatory_keys,movablekeys
fcall -3 0 0 0 scripting 7.0.0 noscript,stale,skip_monitor,no_mandatory_keys,movablekeys
fcall_ro -3 0 0 0 scripting 7.0.0 readonly,noscript,stale,skip_monitor,no_mandatory_keys,movablekeys
script -2 0 0 0 scripting 2.6.0 -
memory -2 0 0 0 server 4.0.0 -
object -2 0 0 0 generic 2.2.3 -
member.put 3 1 1 1 catena - write,denyoom
catena.req -4 0 0 0 catena - write,movablekeys
"""


class Info(NamedTuple):
    name: str
    arity: int
    first: int
    last: int
    step: int
    group: str
    since: str
    flags: tuple


def _parse(table: str) -> dict[bytes, Info]:
    out = {}
    for line in table.strip().splitlines():
        name, arity, first, last, step, group, since, flags = line.split()
        out[name.upper().encode()] = Info(name, int(arity), int(first), int(last), int(step), group, since,
                                         () if flags == "-" else tuple(flags.split(",")))
    return out


COMMANDS = _parse(_TABLE)

# movablekeys: the position of the key count (the keys follow it); the *STOREs' destination,
# before it, is a key too
NUMKEYS = {
    b"SINTERCARD": 1, b"ZINTERCARD": 1, b"LMPOP": 1, b"ZMPOP": 1, b"BLMPOP": 2, b"BZMPOP": 2,
    b"ZUNION": 1, b"ZINTER": 1, b"ZDIFF": 1, b"ZUNIONSTORE": 2, b"ZINTERSTORE": 2, b"ZDIFFSTORE": 2,
    b"EVAL": 2, b"EVALSHA": 2, b"EVAL_RO": 2, b"EVALSHA_RO": 2, b"FCALL": 2, b"FCALL_RO": 2,
}
_DESTINATION = frozenset((b"ZUNIONSTORE", b"ZINTERSTORE", b"ZDIFFSTORE"))
_CATEGORY = {"readonly": "@read", "write": "@write", "fast": "@fast", "blocking": "@blocking",
             "pubsub": "@pubsub", "admin": "@admin"}
_GROUP_CATEGORY = {"sorted-set": "@sortedset", "generic": "@keyspace", "transactions": "@transaction"}


def info(name: bytes, arity: int) -> Info:
    """The description of a registered command (`arity`: its registration's)."""
    known = COMMANDS.get(name)
    return known if known is not None else Info(name.decode(errors="replace").lower(), arity, 0, 0, 0, "catena", "-", ())


def categories(i: Info) -> list[str]:
    cats = [_CATEGORY[f] for f in i.flags if f in _CATEGORY]
    if "fast" not in i.flags:
        cats.append("@slow")
    cats.append(_GROUP_CATEGORY.get(i.group, "@" + i.group))
    return cats


def keys(name: bytes, args: list[bytes]):
    """The key arguments of `args` (a whole command), or None if they cannot be found there."""
    i = COMMANDS.get(name)
    if i is None:
        return None
    if name == b"SORT":
        return _sort_keys(args)
    if name in NUMKEYS:
        at = NUMKEYS[name]
        try:
            n = int(args[at])
        except (IndexError, ValueError):
            return None
        if n < 0 or at + 1 + n > len(args):
            return None
        return ([args[1]] if name in _DESTINATION else []) + list(args[at + 1:at + 1 + n])
    if i.first == 0:
        return []
    last = i.last if i.last >= 0 else len(args) + i.last
    return list(args[i.first:last + 1:i.step])


def _sort_keys(args: list[bytes]) -> list[bytes]:
    """SORT's source and its STORE destination, as Redis's sortGetKeys finds them."""
    skip = {b"LIMIT": 2, b"GET": 1, b"BY": 1}
    destination, i = [], 2
    while i < len(args):
        word = args[i].upper()
        if word == b"STORE" and i + 1 < len(args):
            destination, i = [args[i + 1]], i + 1
        else:
            i += skip.get(word, 0)
        i += 1
    return [args[1], *destination]
