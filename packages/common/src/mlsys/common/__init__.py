"""mlsys.common: the shared core of mlsys.

ANN indexes (:mod:`mlsys.common.ann`), ranking metrics (:mod:`mlsys.common.metrics`), latency
profiling (:mod:`mlsys.common.profiling`), embedding spaces (:mod:`mlsys.common.spaces`), errors
(:mod:`mlsys.common.errors`) and data readers (:mod:`mlsys.common.data`).

This package never imports torch.

Example:
    >>> from mlsys.common import EmbeddingSpace
    >>> EmbeddingSpace("demo", "1", 8).dim
    8
"""

from mlsys.common import errors
from mlsys.common.spaces import EmbeddingSpace

__version__ = "0.1.0"

__all__ = ["EmbeddingSpace", "__version__", "errors"]
