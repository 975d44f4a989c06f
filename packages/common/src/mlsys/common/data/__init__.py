"""Data set location and readers for the standard formats (BEIR, TREC, MovieLens, IDX).

MovieLens: :func:`load_movielens_100k` (the 100K files in detail) and
:func:`load_movielens_release` (every release layout: 100K, 1M, 10M, 20M/25M/32M/latest CSV).

Every reader takes a path, validates what it reads and raises
:class:`~mlsys.common.errors.ParseError` (text formats, with file and line) or
:class:`~mlsys.common.errors.CorruptFileError` (binary formats, with file) on malformed input, and
:class:`~mlsys.common.errors.DatasetNotFoundError` when a file or folder is missing. Gzip-compressed
files are read transparently (detected from their content).

Example:
    >>> from mlsys.common.data import find_dataset, load_beir
    >>> ds = load_beir(find_dataset("scifact"))  # doctest: +SKIP
    >>> len(ds.queries)  # doctest: +SKIP
    300
"""

from mlsys.common.data._beir import (
    BeirDataset,
    load_beir,
    read_beir_corpus,
    read_beir_qrels,
    read_beir_queries,
    write_beir,
)
from mlsys.common.data._idx import (
    FASHION_MNIST_CLASSES,
    FashionMNIST,
    load_fashion_mnist,
    read_idx,
    write_idx,
)
from mlsys.common.data._movielens import (
    RATING_COLUMNS,
    MovieLens100K,
    MovieLensItems,
    MovieLensUsers,
    load_movielens_100k,
)
from mlsys.common.data._movielens_releases import (
    ML1M_OCCUPATIONS,
    MovieLensMovies,
    MovieLensRelease,
    load_movielens_release,
    movielens_layout,
)
from mlsys.common.data._paths import cache_root, data_root, find_dataset
from mlsys.common.data._trec import read_trec_qrels, read_trec_run, write_trec_qrels, write_trec_run

__all__ = [
    "FASHION_MNIST_CLASSES",
    "ML1M_OCCUPATIONS",
    "RATING_COLUMNS",
    "BeirDataset",
    "FashionMNIST",
    "MovieLens100K",
    "MovieLensItems",
    "MovieLensMovies",
    "MovieLensRelease",
    "MovieLensUsers",
    "cache_root",
    "data_root",
    "find_dataset",
    "load_beir",
    "load_fashion_mnist",
    "load_movielens_100k",
    "load_movielens_release",
    "movielens_layout",
    "read_beir_corpus",
    "read_beir_qrels",
    "read_beir_queries",
    "read_idx",
    "read_trec_qrels",
    "read_trec_run",
    "write_beir",
    "write_idx",
    "write_trec_qrels",
    "write_trec_run",
]
