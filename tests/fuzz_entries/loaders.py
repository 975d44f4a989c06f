"""Fuzz entries for issue 18's loaders and calibration helpers (data frames, CSV/Parquet, MovieLens, image folders)."""

ENTRIES = {
    "mlsys.common.ann.mean_interval": "junk",
    "mlsys.common.ann.per_query_recall": "junk",
    "mlsys.recsys.interactions_from_frame": "junk",
    "mlsys.recsys.feature_table_from_frame": "junk",
    "mlsys.recsys.read_interactions": "junk",
    "mlsys.recsys.read_feature_table": "junk",
    "mlsys.recsys.IdCodes": "exempt: a result record built by IdCodes.fit and the frame loaders",
    "mlsys.recsys.InteractionTable": "exempt: a result record built by interactions_from_frame / read_interactions",
    "mlsys.recsys.FeatureFrame": "exempt: a result record built by feature_table_from_frame / read_feature_table",
    "mlsys.common.data.load_movielens_release": (
        "exempt: reads files; garbage, truncated and malformed inputs are tested in "
        "tests/common/data/test_movielens_releases.py"
    ),
    "mlsys.common.data.movielens_layout": "junk",
    "mlsys.common.data.MovieLensRelease": "exempt: a result record built by load_movielens_release",
    "mlsys.vision.ImageFolder": "junk",
    "mlsys.vision.FolderBatch": "exempt: a result record yielded by ImageFolder.batches",
    "mlsys.common.data.MovieLensMovies": "exempt: a result record built by load_movielens_release",
}
