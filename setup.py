"""Build edge-agent's compiled core, edge_agent._core, from ext/_core.pyx and its parts.

The compiled core is optional by default: when Cython or a C compiler is missing
the build falls back to the pure-Python twin (edge_agent.dsp picks it at run time).
Set EDGE_AGENT_REQUIRE_EXT=1 to turn a failed compile into a build error, for
images that must never ship without the compiled core.
"""

import glob
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

REQUIRE_EXT = os.environ.get("EDGE_AGENT_REQUIRE_EXT") == "1"


def _extensions():
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRE_EXT:
            raise SystemExit("EDGE_AGENT_REQUIRE_EXT=1 but Cython is not installed")
        print("edge-agent: Cython missing, building without the compiled core", file=sys.stderr)
        return []
    from setuptools import Extension

    ext = Extension(
        "edge_agent._core",
        ["ext/_core.pyx"],
        # The parts _core.pyx includes, so a change to one rebuilds the core, and an sdist
        # ships them; and the .pyx itself, which cythonize replaces by the .c in the sources.
        depends=["ext/_core.pyx", *sorted(glob.glob("ext/*.pxi"))],
        # No fused multiply-add: the twin in Python rounds after every operation, and the
        # core must give the same bits on a Pi's ARM (where GCC would fuse by default).
        extra_compile_args=["-O2", "-ffp-contract=off"],
    )
    try:
        return cythonize(
            [ext],
            language_level=3,
            compiler_directives={
                "boundscheck": False,
                "wraparound": False,
                "cdivision": True,
            },
        )
    except Exception as exc:
        if REQUIRE_EXT:
            raise
        print(
            f"edge-agent: Cython could not translate ext/_core.pyx ({exc}); "
            "building without the compiled core",
            file=sys.stderr,
        )
        return []


class OptionalBuildExt(build_ext):
    """Build the core; without EDGE_AGENT_REQUIRE_EXT a compile failure is only a warning."""

    def run(self):
        try:
            super().run()
        except Exception as exc:
            if REQUIRE_EXT:
                raise
            print(
                f"edge-agent: compiled core not built ({exc}); the pure-Python twin will run", file=sys.stderr
            )

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            if REQUIRE_EXT:
                raise
            print(f"edge-agent: {ext.name} failed to compile ({exc})", file=sys.stderr)


# Everything else (name, version, dependencies, extras, entry points) is PEP 621
# metadata in pyproject.toml: this file only builds the compiled core.
setup(
    ext_modules=_extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
)
