"""Fuzz entries for the public names mlsys.vision gained in issue 21 (GPU path, on_error)."""

ENTRIES = {
    "mlsys.vision.bucket_for": "junk",
    "mlsys.vision.ImageError": "exempt: a result record built by InferencePipeline.predict_batch",
}
