"""A member whose chain was removed (MASTER.REMOVECHAIN, docs/sharding.md §5). Pure.

It learns it from the coordinator's answer to the view poll it already makes: asked for the
view of a member no chain holds, of a chain that was removed, the coordinator answers that
chain with no members under the removal's epoch (`removed`). From then on the member serves
nothing (`refusal`): a command on a key gets `-MOVED` to the head of the chain the member last
knew serving the key's slot, and where it knows none, or the command has no key, an error naming
the removal; nothing is read from its data. Leaving (the log line, the membership group, the
poll) is the member shell's.
"""

from __future__ import annotations

from typing import Callable

from catena.resp.codec import Error
from catena.view import View


def removed(view: View, chain_id: int) -> bool:
    """Is `view`, the coordinator's answer to this member's poll, the notice that its chain
    `chain_id` was removed: that chain with no members and no learner (a chain that is kept
    always holds one member)."""
    return view.chain_id == chain_id and not view.members and view.learner is None


def gone(chain_id: int) -> Error:
    return Error(f"CLUSTERDOWN chain {chain_id} of this member was removed from the cluster (MASTER.REMOVECHAIN): "
                 "it serves no slot; ask another chain's member (CLUSTER SLOTS there)")


def refusal(chain_id: int, slot: int | None, head_of: Callable[[int | None, int], "str | None"]) -> Error:
    """The answer of a member of removed chain `chain_id` to a command on `slot` (None: no key):
    -MOVED to the head serving it as far as the member knows, else the error naming the removal."""
    head = None if slot is None else head_of(None, slot)
    return Error(f"MOVED {slot} {head}") if head is not None else gone(chain_id)
