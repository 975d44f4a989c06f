"""Build script for mlsys-common's one compiled module (all metadata lives in pyproject.toml).

``mlsys.common.ann._hnswfast`` is the native fast path of ``HNSWIndex.search``. It is optional:
where no C compiler (or no numpy to compile against) is available the build goes on without it and
``HNSWIndex`` uses its pure-Python fast path (same results, a few microseconds more per single
query); ``mlsys.common.ann.HNSW_NATIVE`` tells which one is in use. It is not built for
free-threaded CPython: its lock protocol relies on the GIL.
"""

import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExtWithNumpy(build_ext):
    """Adds numpy's headers at build time; without numpy the optional extension is skipped."""

    def finalize_options(self) -> None:
        super().finalize_options()
        try:
            import numpy
        except ImportError:
            print("mlsys-common: numpy is not importable at build time; skipping the optional C extension")
            self.extensions = []
            return
        for ext in self.extensions:
            ext.include_dirs.append(numpy.get_include())


FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

setup(
    cmdclass={"build_ext": BuildExtWithNumpy},
    ext_modules=[]
    if FREE_THREADED
    else [
        Extension(
            "mlsys.common.ann._hnswfast",
            sources=["src/mlsys/common/ann/_hnswfast.c"],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ],
)
