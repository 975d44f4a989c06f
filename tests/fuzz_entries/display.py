"""Fuzz entries for the displayable results of issue 25 (HTML tables and pandas conversion)."""

ENTRIES = {
    "mlsys.common.profiling.LatencyReport": "exempt: a result record built by LatencyProfiler.report",
    "mlsys.recsys.EvaluationTable": "exempt: a result record built by format_table from EvaluationResults",
}
