"""The compiled write path (catena.compiled): which module file runs, and when the .py does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES

import pytest

from catena import compiled
from catena.compiled import MANIFEST, MODULES, Finder, digest, source_of

NAME = "catena.chain.replica"


def where(*modules: str, pure: bool = False) -> dict:
    """The file each module runs from, in a fresh interpreter."""
    env = {**os.environ, "CATENA_PURE_PYTHON": "1" if pure else ""}
    code = "import importlib, json, sys; print(json.dumps({m: importlib.import_module(m).__file__ for m in sys.argv[1:]}))"
    out = subprocess.run([sys.executable, "-c", code, *modules], env=env, capture_output=True, text=True,
                         timeout=60, check=True)
    return json.loads(out.stdout)


def fake_build(root, name=NAME, *, recorded: str | None = None):
    """A source and an extension file beside it, and a manifest recording `recorded` (default:
    the source's digest). The finder only locates files; nothing here is loaded."""
    source = source_of(name, root)
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text("X = 1\n")
    ext = source.with_name(source.stem + EXTENSION_SUFFIXES[0])
    ext.write_bytes(b"\x7fELF")
    (root / MANIFEST).write_text(json.dumps({name: recorded or digest(source)}))
    return source, ext


def test_a_module_runs_compiled_while_its_source_is_the_one_built(tmp_path, monkeypatch):
    monkeypatch.delenv("CATENA_PURE_PYTHON", raising=False)
    source, ext = fake_build(tmp_path)
    finder = Finder(tmp_path)
    assert finder.find_spec(NAME).origin == str(ext)
    assert finder.loaded == {NAME: True}


def test_an_edited_source_runs_as_written_not_its_older_build(tmp_path, monkeypatch):
    monkeypatch.delenv("CATENA_PURE_PYTHON", raising=False)
    source, ext = fake_build(tmp_path)
    source.write_text("X = 2\n")
    finder = Finder(tmp_path)
    assert finder.find_spec(NAME).origin == str(source)
    assert finder.loaded == {NAME: False}


@pytest.mark.parametrize("case", ["pure", "no manifest", "not built", "other digest"])
def test_the_source_runs_when_the_build_does_not_vouch_for_the_extension(tmp_path, monkeypatch, case):
    monkeypatch.delenv("CATENA_PURE_PYTHON", raising=False)
    source, ext = fake_build(tmp_path, recorded="0" * 64 if case == "other digest" else None)
    if case == "pure":
        monkeypatch.setenv("CATENA_PURE_PYTHON", "1")
    elif case == "no manifest":
        (tmp_path / MANIFEST).unlink()
    elif case == "not built":
        ext.unlink()
    assert Finder(tmp_path).find_spec(NAME).origin == str(source)


def test_modules_outside_the_list_are_left_to_python(tmp_path):
    fake_build(tmp_path)
    assert Finder(tmp_path).find_spec("catena.chain.values") is None
    assert "catena.chain.values" not in MODULES


def test_the_fallback_runs_every_module_from_its_source():
    files = where(*MODULES, pure=True)
    assert files == {m: str(source_of(m)) for m in MODULES}


@pytest.mark.skipif(not os.environ.get("CATENA_EXPECT_COMPILED"), reason="CI's build must compile; a dev tree may not")
def test_the_build_compiled_every_module_and_they_run_compiled():
    built = json.loads((compiled.ROOT / MANIFEST).read_text())
    assert sorted(built) == sorted(MODULES)
    files = where(*MODULES)
    assert all(any(files[m].endswith(s) for s in EXTENSION_SUFFIXES) for m in MODULES), files
    if not compiled.pure():  # this process too, unless it is the fallback's run
        import catena.chain.replica

        assert catena.chain.replica.__file__.endswith(tuple(EXTENSION_SUFFIXES))
