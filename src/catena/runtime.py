"""How catena's processes run their event loop: uvloop where it is installed, else asyncio."""

from __future__ import annotations

import asyncio


def runner():
    """`uvloop.run` or `asyncio.run`."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run
