"""The reading side: load a run (local or reference), compare with the reference, tables, figures, leaderboard.

It imports no method module (tests/test_layers.py): a run folder says what each row is (harness/report.py).
"""

from .compare import diff_to_retrain, gap_to_retrain, retrain_floor
from .figures import plot_accuracy, plot_prefixed, plot_times, plot_traces
from .page import banner, header, paper_status
from .reference import Source, choose_source, load_reference
from .reproduction import compare as compare_runs
from .reproduction import reproduction_section
from .run import KIND_ORDER, Run, describe_rows, latest_runs, load_run, reference_of
from .tables import (
    ENSEMBLE_SHOWN,
    claims_frame,
    claims_table,
    deviations_table,
    ensemble_frame,
    ensemble_table,
    left_out_note,
    results_frame,
    results_table,
)

__all__ = [
    "KIND_ORDER", "Run", "describe_rows", "latest_runs", "load_run", "reference_of", "diff_to_retrain",
    "gap_to_retrain", "retrain_floor", "claims_frame", "claims_table", "deviations_table", "ensemble_frame",
    "ensemble_table", "left_out_note", "results_frame", "results_table", "plot_accuracy", "plot_prefixed",
    "plot_times", "plot_traces", "banner", "header", "paper_status", "ENSEMBLE_SHOWN", "Source", "choose_source",
    "load_reference", "compare_runs", "reproduction_section",
]
