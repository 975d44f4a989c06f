"""Build script for mlsys-common's one compiled module (all metadata lives in pyproject.toml).

``mlsys.common.ann._hnswfast`` is the native fast path of ``HNSWIndex.search``. It is optional:
where no C compiler is available the build goes on without it and ``HNSWIndex`` uses its
pure-Python fast path (same results, ~2-5 us more per single query); ``mlsys.common.ann.HNSW_NATIVE``
tells which one is in use.
"""

import numpy
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mlsys.common.ann._hnswfast",
            sources=["src/mlsys/common/ann/_hnswfast.c"],
            include_dirs=[numpy.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
