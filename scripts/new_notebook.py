"""Write a paper notebook in the suite's thin pattern (no def, no loops, no outputs).

    python scripts/new_notebook.py PAPER "Title" intro.md [--figure 'ul.plot_accuracy(run);' ...]

The intro file is Markdown (math allowed) placed under the title. Each --figure is one code cell.
"""

import argparse
import re

import nbformat as nbf

PAPER_ID = re.compile(r"[a-z][a-z0-9_]*")  # the stem of unlearnlib/papers/<id>.yaml, a Python-identifier-like name


def paper_id(text: str) -> str:
    if not PAPER_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a paper id: lower-case letters, digits and _, starting "
                                         f"with a letter (e.g. deep_unlearning)")
    return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("paper", type=paper_id)
    ap.add_argument("title")
    ap.add_argument("intro")
    ap.add_argument("--figure", action="append", default=[])
    a = ap.parse_args()
    md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
    params = code(f"paper = {a.paper!r}\n"
                  'profile = "smoke"  # make reproduce passes the profile (auto -> paper with CUDA, else cpu)\n'
                  'seeds = ""  # empty: the profile seeds; or a list such as 1,2,3 in quotes\n'
                  'device = "auto"\n'
                  'executor = "local"  # or "ray": the cells as Ray tasks (RAY_ADDRESS joins a cluster)\n'
                  'workers = 0  # ray: local workers (0: one per core, or per GPU)\n'
                  'threads = 0  # torch threads per cell (0: the fair share of the cores)')
    params.metadata["tags"] = ["parameters", "remove-cell"]  # the book shows papermill's injected values
    run = code("run = ul.run_paper(paper, profile, seeds=seeds, device=device, executor=executor, workers=workers,\n"
               "                   threads=threads)")
    run.metadata["tags"] = ["hide-output"]
    figures = a.figure or ["ul.plot_accuracy(run);", "ul.plot_times(run);"]
    nb = nbf.v4.new_notebook()
    nb.cells = [
        md(f"# {a.title}\n\n{open(a.intro).read().strip()}\n\n"
           f"Reproduce: `make reproduce PAPER={a.paper}` (add `PROFILE=cpu|smoke|paper`)."),
        params,
        code("import unlearnlib as ul\n\ncfg = ul.load_paper(paper, profile)\nprint(ul.banner(cfg, device))\n"
             "ul.header(cfg)"),
        md("## Run\n\nData, original model (cached), every method timed, metrics. One line per method "
           "(expand the output to read the log)."),
        run,
        code("run.data_summary()"),
        md("## Claims\n\nEach verdict is computed from this run's numbers and their uncertainty: the estimate "
           "is the mean over training seeds with a 95% t-interval (the scenarios pooled within a seed as the "
           "paper pools them; times by their median). *holds* / *fails*: the whole interval is on one side "
           "of the check; *inconclusive*: it contains the threshold; *not comparable on this profile*; "
           "the `smoke` profile is a *pipeline check only*."),
        code("ul.claims_table(run)"),
        md("## Paper vs ours\n\nOurs: mean ± half-width of the 95% interval over training seeds, one row "
           "group per kind of forget scenario. |Δ retrain|: the gap to retraining from scratch, with the "
           "retrain-vs-retrain noise floor below each group. Paper: its table, with its source in the caption."),
        code("ul.results_table(run)"),
        md("## Figures"),
        *[code(f) for f in figures],
        md("## Deviations and interpretations\n\nThe default is the paper's behaviour (or the recommended "
           "reading where the paper was not available); the switch selects the alternative."),
        code("ul.deviations_table(run.config)"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbf.write(nb, f"notebooks/{a.paper}.ipynb")


if __name__ == "__main__":
    main()
