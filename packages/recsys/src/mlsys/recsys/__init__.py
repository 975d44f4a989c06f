"""mlsys.recsys: two-tower retrieval that serves cold-start items from their features, with
baselines, fallbacks and an honest evaluation protocol.

Blocks: :class:`Interactions` and :class:`FeatureTable` (data), seeded splits
(:func:`random_holdout`, :func:`temporal_holdout`, :func:`item_cold_start`, :func:`young_user`),
:class:`TwoTowerModel` (torch) served by :class:`TwoTowerRetriever` over an
:mod:`mlsys.common.ann` index, baselines (:class:`Popularity`, :class:`ItemKNN`, :class:`EASE`,
:class:`ContentBased`, :class:`DemographicPrior`), :class:`FallbackChain`, and
:func:`evaluate_recommender` (metrics from :mod:`mlsys.common.metrics`). The MovieLens table:
``python -m mlsys.recsys.evaluate --data /path/to/ml-100k``.

Example:
    >>> from mlsys.recsys import EASE, Interactions, random_holdout
    >>> x = Interactions(users=[1, 1, 1, 2, 2, 2], items=[1, 2, 3, 1, 2, 4])
    >>> EASE(l2=1.0).fit(x).recommend([1], 1)[0].tolist()
    [[4]]
"""

from mlsys.recsys._base import Recommender, top_k
from mlsys.recsys._baselines import (
    EASE,
    ContentBased,
    DemographicPrior,
    ItemKNN,
    Popularity,
    RandomRecommender,
)
from mlsys.recsys._cold_start import FeaturesToFactors, ridge_loo
from mlsys.recsys._data import FEATURE_KINDS, FeatureSpec, FeatureTable, IdIndex, Interactions
from mlsys.recsys._evaluation import (
    EvaluationResult,
    EvaluationTable,
    evaluate_recommender,
    format_table,
    split_qrels,
)
from mlsys.recsys._frames import (
    FeatureFrame,
    IdCodes,
    InteractionTable,
    feature_table_from_frame,
    interactions_from_frame,
    read_feature_table,
    read_interactions,
)
from mlsys.recsys._frequency import StaticFrequencyEstimator, StreamingFrequencyEstimator
from mlsys.recsys._movielens import RecsysDataset, load_movielens
from mlsys.recsys._serving import FallbackChain, FallbackStage, RoutedRecommendations, TwoTowerRetriever
from mlsys.recsys._splits import (
    Split,
    item_cold_start,
    random_holdout,
    temporal_holdout,
    validation_holdout,
    young_user,
)
from mlsys.recsys._synthetic import synthetic_dataset
from mlsys.recsys._two_tower import TwoTowerConfig, TwoTowerModel, TwoTowerReport, in_batch_softmax_loss

__version__ = "0.1.0"

__all__ = [
    "EASE",
    "FEATURE_KINDS",
    "ContentBased",
    "DemographicPrior",
    "EvaluationResult",
    "EvaluationTable",
    "FallbackChain",
    "FallbackStage",
    "FeatureFrame",
    "FeatureSpec",
    "FeatureTable",
    "FeaturesToFactors",
    "IdCodes",
    "IdIndex",
    "InteractionTable",
    "Interactions",
    "ItemKNN",
    "Popularity",
    "RandomRecommender",
    "Recommender",
    "RecsysDataset",
    "RoutedRecommendations",
    "Split",
    "StaticFrequencyEstimator",
    "StreamingFrequencyEstimator",
    "TwoTowerConfig",
    "TwoTowerModel",
    "TwoTowerReport",
    "TwoTowerRetriever",
    "__version__",
    "evaluate_recommender",
    "feature_table_from_frame",
    "format_table",
    "in_batch_softmax_loss",
    "interactions_from_frame",
    "item_cold_start",
    "load_movielens",
    "random_holdout",
    "ridge_loo",
    "read_feature_table",
    "read_interactions",
    "split_qrels",
    "synthetic_dataset",
    "temporal_holdout",
    "top_k",
    "validation_holdout",
    "young_user",
]
