"""Build of the native extension ``bigmodel_fast._native``.

Two decisions are made here, at build time:

* OpenMP: a tiny OpenMP program is compiled, linked and *run* with the
  compiler that will build the extension (as scikit-learn does).  If that
  fails the extension is built serially and the build says so loudly;
  ``BIGMODEL_FAST_REQUIRE_OPENMP=1`` turns that into an error.
* CPU features: nothing here.  The kernels are compiled once per ISA level
  from the same source (``src/kernels_<isa>.c`` select their level with a
  target pragma) and the widest level the CPU has is chosen at import time,
  so a wheel built here runs on any x86-64 machine.  There is deliberately no
  ``-march=native``.

``BIGMODEL_FAST_EXTRA_CFLAGS`` / ``BIGMODEL_FAST_EXTRA_LDFLAGS`` add flags
(used by ``tools/sanitize.sh`` for AddressSanitizer/UBSan builds).
"""

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
# Flags for every C file of ours.  -ffp-contract=off: the compiler never fuses
# a*b+c on its own; the kernels say where (bmf_simd.h's fma), so their bits do
# not depend on how a compiler version inlines and fuses (determinism).
C_FLAGS = ["-O3", "-std=gnu11", "-ffp-contract=off", "-fno-math-errno",
           "-Wall", "-Wextra", "-fvisibility=hidden"]
KERNEL_SOURCES = sorted(
    os.path.join("src", name) for name in os.listdir(os.path.join(HERE, "src"))
    if name.endswith(".c"))
# The kernels live in headers (templates included per ISA): a change to one
# must rebuild the extension, which setuptools only knows when told.
KERNEL_HEADERS = sorted(
    os.path.join("src", name) for name in os.listdir(os.path.join(HERE, "src"))
    if name.endswith(".h"))

OPENMP_PROBE = textwrap.dedent("""
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel num_threads(2) reduction(+:n)
        n += 1;
        printf("%d\\n", n);
        return n == 2 ? 0 : 1;
    }
""")


def _env_flags(name):
    return shlex.split(os.environ.get(name, ""))


def _log(msg):
    print(f"bigmodel_fast build: {msg}", file=sys.stderr, flush=True)


def openmp_flags(compiler):
    """Return (compile_flags, link_flags) that give working OpenMP, or None."""
    candidates = [(["-fopenmp"], ["-fopenmp"])]
    if sys.platform == "darwin":
        candidates.append((["-Xpreprocessor", "-fopenmp"], ["-lomp"]))
    tmp = tempfile.mkdtemp(prefix="bmf_omp_probe_")
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(OPENMP_PROBE)
        for cflags, ldflags in candidates:
            try:
                objs = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
                exe = os.path.join(tmp, "probe")
                compiler.link_executable(objs, exe, extra_postargs=ldflags)
                out = subprocess.run([exe], capture_output=True, text=True, timeout=60)
                if out.returncode == 0 and out.stdout.strip() == "2":
                    return cflags, ldflags
            except Exception as exc:  # compile, link or run failure
                _log(f"OpenMP probe with {cflags} failed: {exc}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return None


class BuildExt(build_ext):
    def build_extensions(self):
        # Our sources get the strict warning set; the Cython output (not ours)
        # gets -O3 only.
        compiler = self.compiler
        found = openmp_flags(compiler)
        require = os.environ.get("BIGMODEL_FAST_REQUIRE_OPENMP", "") == "1"
        if found is None:
            msg = ("OpenMP is NOT available with this compiler: building the "
                   "kernels SERIAL (single-threaded). Install a compiler with "
                   "OpenMP support (gcc, or clang with libomp) for parallel kernels.")
            if require:
                raise RuntimeError(msg + " (BIGMODEL_FAST_REQUIRE_OPENMP=1)")
            _log("WARNING: " + msg)
            omp_c, omp_ld = [], []
        else:
            omp_c, omp_ld = found
            _log(f"OpenMP enabled ({' '.join(omp_c)})")
        extra_c = _env_flags("BIGMODEL_FAST_EXTRA_CFLAGS")
        extra_ld = _env_flags("BIGMODEL_FAST_EXTRA_LDFLAGS")
        flags_text = " ".join(C_FLAGS + omp_c + extra_c)
        for ext in self.extensions:
            ext.extra_compile_args = ["-O3"] + omp_c + extra_c
            ext.extra_link_args = omp_ld + extra_ld
            ext.define_macros.append(("BMF_BUILD_CFLAGS", '"%s"' % flags_text))

        original_compile = compiler._compile

        def compile_one(obj, src, ext, cc_args, extra_postargs, pp_opts):
            postargs = list(extra_postargs)
            if os.path.abspath(src).startswith(os.path.join(HERE, "src") + os.sep):
                postargs = C_FLAGS + postargs
            return original_compile(obj, src, ext, cc_args, postargs, pp_opts)

        compiler._compile = compile_one
        try:
            super().build_extensions()
        finally:
            compiler._compile = original_compile


extension = Extension(
    "bigmodel_fast._native",
    sources=["bigmodel_fast/_native.pyx"] + KERNEL_SOURCES,
    include_dirs=["src", numpy.get_include()],
    depends=KERNEL_HEADERS,
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
)

setup(
    ext_modules=cythonize(
        [extension],
        compiler_directives={"language_level": 3, "boundscheck": False,
                             "wraparound": False, "initializedcheck": False},
    ),
    cmdclass={"build_ext": BuildExt},
)
