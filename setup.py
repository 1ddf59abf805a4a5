"""catena's build: the package pyproject.toml declares, plus the write path's modules compiled
with Cython from their own .py sources (src/catena/compiled.py says which, and when they run).

No Cython, no C compiler, or CATENA_PURE_PYTHON=1 at install time: a pure-Python install, which
runs the same. `python setup.py build_ext --inplace` (what `make test` runs) rebuilds the
modules whose sources changed, beside the sources.
"""

import importlib.util
import json
import os
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_catena_compiled", HERE / "src/catena/compiled.py")
compiled = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compiled)  # stdlib only: the package's dependencies need not be installed yet

DIRECTIVES = {
    "language_level": 3,
    "annotation_typing": False,  # annotations document; they do not narrow what a function accepts
    "binding": True,  # functions stay introspectable and patchable like Python's
}


class BuildCompiled(build_ext):
    """build_ext that compiles in parallel, tolerates a missing compiler (the modules stay
    pure), and records the source digest of every module it built (compiled.MANIFEST)."""

    def finalize_options(self):
        super().finalize_options()
        self.parallel = self.parallel or os.cpu_count() or 1

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001  (no compiler: a pure-Python install)
            self.warn(f"catena: compiling the write path failed ({exc}); installing pure Python")
        built = {}
        for ext in self.extensions:
            source, target = compiled.source_of(ext.name, HERE / "src/catena"), Path(self.get_ext_fullpath(ext.name))
            if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:  # not an older build's
                built[ext.name] = compiled.digest(source)
        manifest = Path(self.get_ext_fullpath("catena.compiled")).parent / compiled.MANIFEST
        manifest.write_text(json.dumps(built, indent=1, sort_keys=True) + "\n")


def extensions() -> list:
    if compiled.pure():
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    exts = [Extension(name, [str(compiled.source_of(name, Path("src/catena")))], optional=True)
            for name in compiled.MODULES]
    return cythonize(exts, compiler_directives=DIRECTIVES, build_dir="build/cython", quiet=True)


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildCompiled})
