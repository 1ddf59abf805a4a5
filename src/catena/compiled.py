"""Which of catena's modules run compiled, and the rule that keeps them honest.

`pip install` compiles the write path's modules (MODULES) with Cython from their own .py
sources (setup.py): the same code, nothing written twice, about a fifth less CPU at the head.
The build records each source's SHA-256 in `compiled.json` beside this file. A compiled module
is used only while its .py is still the source it was built from, so an edited module runs as
written until the next build (`make test` rebuilds); `CATENA_PURE_PYTHON=1` runs every module
from its .py (the fallback, which the tests also run). With no compiler the install is pure
Python and runs the same.

Compiled modules must not raise an int to a C-typed power (`10 ** len(x)` is a C double under
Cython 3): `chain/values.py` does, and stays pure.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from importlib.util import spec_from_file_location
from pathlib import Path

MODULES = (
    "catena.resp.server", "catena.resp.codec", "catena.resp.commands", "catena.resp.numbers",
    "catena.resp.limits", "catena.chain.node", "catena.chain.replica", "catena.chain.state",
    "catena.chain.strings", "catena.chain.string_reads", "catena.chain.ops", "catena.chain.log",
    "catena.chain.links", "catena.chain.versions", "catena.chain.messages", "catena.chain.receive",
    "catena.chain.slot_guard", "catena.effects", "catena.metrics.member", "catena.slots",
)
MANIFEST = "compiled.json"
ROOT = Path(__file__).resolve().parent


def source_of(name: str, root: Path = ROOT) -> Path:
    """The .py file of module `name` (catena.chain.replica -> <root>/chain/replica.py)."""
    return root.joinpath(*name.split(".")[1:]).with_suffix(".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pure() -> bool:
    return os.environ.get("CATENA_PURE_PYTHON", "") not in ("", "0")


class Finder:
    """A meta path finder for MODULES: the built extension while its source is unchanged, else
    the .py (Python's own finder would take any extension beside a .py, however stale)."""

    def __init__(self, root: Path = ROOT):
        self.root = root
        try:
            self.built: dict[str, str] = json.loads((root / MANIFEST).read_text())
        except (OSError, ValueError):
            self.built = {}
        self.loaded: dict[str, bool] = {}  # module -> ran compiled

    def find_spec(self, name: str, path=None, target=None) -> ModuleSpec | None:
        if name not in MODULES:
            return None
        source = source_of(name, self.root)
        ext = self._extension(name, source)
        self.loaded[name] = ext is not None
        return spec_from_file_location(name, ext or source)

    def _extension(self, name: str, source: Path) -> Path | None:
        if pure() or name not in self.built or not source.exists() or digest(source) != self.built[name]:
            return None
        for suffix in EXTENSION_SUFFIXES:
            ext = source.with_name(source.stem + suffix)
            if ext.exists():
                return ext
        return None


FINDER = Finder()


def summary() -> str:
    """"compiled/loaded": how many of MODULES this process runs compiled, of those it imported
    (INFO server's catena_compiled_modules)."""
    return f"{sum(FINDER.loaded.values())}/{len(FINDER.loaded)}"
