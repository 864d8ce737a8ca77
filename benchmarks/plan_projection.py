"""``make plan``'s projection for every paper and profile (issue 22 part 7), as one CSV for the Performance page.

    python benchmarks/plan_projection.py              # seconds; results/benchmarks/plan_projection.csv
    python benchmarks/plan_projection.py --smoke --out DIR

Nothing is measured or run: each row is :func:`unlearnlib.harness.estimate.estimate` of one paper and profile by
cell kind, with the CPU hours from the committed throughputs (``benchmarks/throughputs.csv``, when measured) and the
hours on one H200 from the stated assumptions (``estimate.GPU_ASSUMPTIONS``).
"""

from __future__ import annotations

import _common  # before unlearnlib: puts this checkout first on sys.path

from unlearnlib.config import available_papers, load_paper
from unlearnlib.harness.estimate import estimate, rows


def main(argv=None) -> int:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--profiles", default="", help="comma-separated (default: every profile of every paper)")
    args = p.parse_args(argv)
    out = _common.out_dir(args)
    wanted = [x for x in args.profiles.split(",") if x]
    if args.smoke and not wanted:
        wanted = ["smoke"]
    table = []
    for paper in available_papers():
        for profile in load_paper(paper, "paper").profiles:
            if wanted and profile not in wanted:
                continue
            est = estimate(paper, profile)
            table += rows(est)
            _common.say(f"{paper:26s} {profile:8s} {est.cells:5d} cells  h200 {est.hours('h200'):7.2f} h (assumed)")
    m = _common.machine()
    path = _common.write_csv(out / "plan_projection.csv", [{**r, "git_commit": m["git_commit"], "date": m["date"]}
                                                           for r in table])
    _common.say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
