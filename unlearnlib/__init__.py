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

import importlib

# name -> the module that defines it, imported on first use (PEP 562): reading a stored run (unlearnlib.results)
# loads no method, and `import unlearnlib` stays cheap
_API = {
    "config": ("ConfigError", "available_papers", "load_paper"),
    "data": ("DATASETS", "DatasetNotAvailableError", "load_dataset"),
    "harness": ("RunLockedError", "run_paper"),
    "results.leaderboard": ("leaderboard_frame", "leaderboard_table", "plot_pareto", "plot_ranking",
                            "scenario_summary"),
    "methods": ("METHODS",),
    "metrics": ("METRICS",),
    "models": ("MODELS", "build_model"),
    "results": ("Run", "banner", "claims_frame", "claims_table", "deviations_table", "ensemble_frame",
                "ensemble_table", "header", "load_run", "plot_accuracy", "plot_prefixed", "plot_times", "plot_traces",
                "results_frame", "results_table", "choose_source", "load_reference", "reproduction_section"),
}
_WHERE = {name: mod for mod, names in _API.items() for name in names}


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__version__ = "0.1.0"

__all__ = [
    "ConfigError", "available_papers", "load_paper", "DATASETS", "DatasetNotAvailableError", "load_dataset",
    "run_paper", "RunLockedError", "METHODS", "METRICS", "MODELS", "build_model", "Run", "banner", "header",
    "claims_frame", "claims_table", "deviations_table", "ensemble_frame", "ensemble_table", "load_run",
    "plot_accuracy", "plot_prefixed", "plot_times", "plot_traces", "results_frame", "results_table",
    "leaderboard_frame", "leaderboard_table", "plot_pareto", "plot_ranking", "scenario_summary", "choose_source",
    "load_reference", "reproduction_section",
]
