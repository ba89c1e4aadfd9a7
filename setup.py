"""Build fxbn: the C++17 core in csrc/ (-Wall -Wextra; -Werror with FXBN_WERROR=1) and the Cython binding in fxbn/.

Environment switches:
  FXBN_DEBUG=1     Cython bounds/wraparound checks on, -O0 -g, assertions on
  FXBN_SANITIZE=1  AddressSanitizer + UndefinedBehaviorSanitizer on the core and the binding (run the tests with
                   LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"
                   ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1: libstdc++ preloaded too, else the
                   first C++ exception stops ASan's __cxa_throw interceptor with "CHECK failed")
  FXBN_WERROR=1    warnings as errors for the C++ core (CI and development; a user's install with a newer compiler
                   must not fail on a new warning)
"""
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("FXBN_DEBUG") == "1"
SANITIZE = os.environ.get("FXBN_SANITIZE") == "1"
WERROR = os.environ.get("FXBN_WERROR") == "1"
CORE_SOURCES = sorted(os.path.join("csrc", "fxbn", f) for f in os.listdir(os.path.join("csrc", "fxbn"))
                      if f.endswith(".cpp"))

# Cython directives, in one place.
DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}

common = ["-std=c++17", "-O0" if DEBUG else "-O3", "-g" if DEBUG else "-g0"]
link = []
if sys.platform.startswith("linux"):
    common.append("-fopenmp")
    link.append("-fopenmp")
if SANITIZE:
    common += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
    link += ["-fsanitize=address,undefined"]
if not DEBUG:
    common.append("-DNDEBUG")
STRICT = ["-Wall", "-Wextra"] + (["-Werror", "-Wno-error=unknown-pragmas"] if WERROR else [])


class BuildExt(build_ext):
    """Compile the C++ core with our own strict flags, then link it into the Cython extension."""

    def build_extension(self, ext):
        objects = self.compiler.compile(CORE_SOURCES, output_dir=self.build_temp, include_dirs=["csrc"],
                                        extra_postargs=common + STRICT, depends=[])
        ext.extra_objects = list(objects)
        super().build_extension(ext)


def extensions():
    import numpy
    from Cython.Build import cythonize

    ext = Extension(
        "fxbn._core",
        sources=["fxbn/_core.pyx"],
        include_dirs=["csrc", numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        language="c++",
        extra_compile_args=common,
        extra_link_args=link,
        depends=[os.path.join("csrc", "fxbn", f) for f in os.listdir(os.path.join("csrc", "fxbn"))],
    )
    return cythonize([ext], compiler_directives=DIRECTIVES, force=DEBUG or SANITIZE)


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
