"""Two smoke runs at once against one alone: the CPU threads are divided (unlearnlib.threads), not oversubscribed.

    python benchmarks/concurrency.py                  # two deep_unlearning smoke runs: one alone, then two together
    python benchmarks/concurrency.py --papers deep_unlearning,unsir
    python benchmarks/concurrency.py --smoke --out /tmp/b   # a tiny training loop instead of a run: checks the script

Each run is a fresh process (``python -c "run_paper(...)"``) with its own empty cell store and results folder, so
it computes every cell; threads are left to the suite's fair share (no ``UNLEARNLIB_THREADS``). First each distinct
paper alone, one after the other; then all of them started together. The figure: the wall time of the concurrent runs
(until the last ends) over the wall time of the slowest run alone; the target is <= 2.5x for two runs (a perfect
division of the cores between two would give about 2x). Writes ``concurrency.csv``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # before unlearnlib: puts this checkout first on sys.path

RUN = ("import sys, unlearnlib.harness as h; "
       "h.run_paper(sys.argv[1], sys.argv[2], seeds=sys.argv[3] or None, device='cpu', progress=False, "
       "methods=(sys.argv[4].split(',') if sys.argv[4] else None))")
# --smoke: one process's worth of torch work that registers as computing, as a cell does
TINY = ("import sys, time, torch; from unlearnlib import threads as T; "
        "from unlearnlib.train import TrainConfig, fit\n"
        "with T.computing():\n"
        "    n = T.use(); torch.manual_seed(0); m = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), "
        "torch.nn.Flatten(), torch.nn.Linear(8 * 26 * 26, 10))\n"
        "    x, y = torch.randn(256, 1, 28, 28), torch.randint(0, 10, (256,))\n"
        "    fit(m, [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)], TrainConfig(epochs=int(sys.argv[2]), "
        "lr=0.01, scheduler='none'), progress=False)\n"
        "    print('threads', n)")


def launch(paper: str, args, base: Path, i: int) -> subprocess.Popen:
    roots = {k: base / f"{k.lower()}_{i}" for k in ("UNLEARNLIB_RESULTS", "UNLEARNLIB_CACHE")}
    for p in roots.values():
        p.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "UNLEARNLIB_THREADS"}
    env.update({k: str(v) for k, v in roots.items()})
    env["PYTHONPATH"] = os.pathsep.join([str(_common.REPO), *filter(None, [env.get("PYTHONPATH")])])
    if args.smoke:
        cmd = [sys.executable, "-c", TINY, paper, "1"]
    else:
        cmd = [sys.executable, "-c", RUN, paper, args.profile, args.seeds, args.methods]
    log = open(base / f"run_{i}.log", "w")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=_common.REPO)


def wait_all(procs: list[subprocess.Popen], base: Path) -> None:
    for p in procs:
        if p.wait() != 0:
            logs = "\n".join(f.read_text()[-2000:] for f in sorted(base.glob("run_*.log")))
            raise SystemExit(f"a run failed (exit {p.returncode}); the logs' ends:\n{logs}")


def main(argv=None) -> int:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--papers", default="deep_unlearning,deep_unlearning")
    p.add_argument("--profile", default="smoke")
    p.add_argument("--seeds", default="", help="empty: the profile's seeds")
    p.add_argument("--methods", default="", help="comma-separated (empty: every configured method)")
    args = p.parse_args(argv)
    out = _common.out_dir(args)
    papers = [s.strip() for s in args.papers.split(",") if s.strip()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="concurrency-") as tmp:
        base = Path(tmp)
        alone = {}
        for i, paper in enumerate(dict.fromkeys(papers)):  # each distinct paper once
            t0 = time.perf_counter()
            wait_all([launch(paper, args, base, i)], base)
            alone[paper] = time.perf_counter() - t0
            rows.append({"papers": paper, "profile": args.profile, "mode": "alone", "runs": 1,
                         "seconds": alone[paper]})
            _common.say(f"   {paper} alone: {alone[paper]:.1f} s")
        t0 = time.perf_counter()
        procs = [launch(paper, args, base, 100 + i) for i, paper in enumerate(papers)]
        wait_all(procs, base)
        together = time.perf_counter() - t0
    slowest = max(alone.values())
    ratio = together / slowest
    one_each = sum(alone[p] for p in papers)  # the same runs one after the other
    rows.append({"papers": "+".join(papers), "profile": args.profile, "mode": "together", "runs": len(papers),
                 "seconds": together, "ratio_to_slowest_alone": ratio, "ratio_to_sum_alone": together / one_each})
    env = _common.machine()
    env.pop("threads")  # each process takes its own share
    path = _common.write_csv(out / "concurrency.csv", [{**r, "smoke": args.smoke, **env} for r in rows])
    _common.say(f"{len(papers)} runs together: {together:.1f} s = {ratio:.2f}x the slowest alone ({slowest:.1f} s), "
                f"{together / one_each:.2f}x their sum (target <= 2.5x for two)")
    _common.say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
