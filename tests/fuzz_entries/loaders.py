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
}
