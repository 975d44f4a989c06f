"""Data set location and readers for the standard formats (BEIR, TREC, MovieLens, IDX)."""

from mlsys.common.data._paths import data_root, find_dataset

__all__ = ["data_root", "find_dataset"]
