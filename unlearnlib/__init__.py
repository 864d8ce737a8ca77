"""unlearnlib: a small library to replicate machine-unlearning papers.

The public API, in the order a paper notebook uses it::

    import unlearnlib as ul
    cfg = ul.load_paper("deep_unlearning", "cpu")      # validated config for one profile
    run = ul.run_paper("deep_unlearning", "cpu")       # plan of cells -> executor -> results/ (resumable)
    ul.claims_table(run); ul.results_table(run)          # paper vs ours, verdict per claim
    ul.plot_accuracy(run); ul.plot_times(run)

``run_paper(..., executor="ray", workers=2)`` runs the same cells as Ray tasks. Registries: ``DATASETS``,
``MODELS``, ``METHODS``, ``METRICS``.
"""

from .config import ConfigError, available_papers, load_paper
from .data import DATASETS, DatasetNotAvailableError, load_dataset
from .harness import RunLockedError, run_paper
from .leaderboard import leaderboard_frame, leaderboard_table, plot_pareto, plot_ranking, scenario_summary
from .methods import METHODS
from .metrics import METRICS
from .models import MODELS, build_model
from .results import (
                      Run,
                      banner,
                      claims_frame,
                      claims_table,
                      deviations_table,
                      ensemble_frame,
                      ensemble_table,
                      header,
                      load_run,
                      plot_accuracy,
                      plot_prefixed,
                      plot_times,
                      plot_traces,
                      results_frame,
                      results_table,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "available_papers", "load_paper", "DATASETS", "DatasetNotAvailableError", "load_dataset",
    "run_paper", "RunLockedError", "METHODS", "METRICS", "MODELS", "build_model", "Run", "banner", "header",
    "claims_frame", "claims_table", "deviations_table", "ensemble_frame", "ensemble_table", "load_run",
    "plot_accuracy", "plot_prefixed", "plot_times", "plot_traces", "results_frame", "results_table",
    "leaderboard_frame", "leaderboard_table", "plot_pareto", "plot_ranking", "scenario_summary",
]
