"""The head of a chapter: banner, header, the book's status row."""

from __future__ import annotations

import textwrap

from ..claims import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    NOT_COMPARABLE,
    PIPELINE_ONLY,
)
from ..paper import PaperConfig
from .run import Run, _models, latest_runs
from .tables import claims_frame

BANNER_WIDTH = 110  # characters: the chapter's output box (1,400-px page) shows ~120 without scrolling sideways


def wrap_lines(text: str, width: int = BANNER_WIDTH) -> str:
    """Each line of ``text`` folded at word boundaries to ``width`` characters, continuations indented by two."""
    return "\n".join(textwrap.fill(line, width, subsequent_indent="  ", break_long_words=False,
                                   break_on_hyphens=False) or line for line in text.split("\n"))


def banner(cfg: PaperConfig | Run, device: str = "auto") -> str:
    if isinstance(cfg, Run):
        cfg = cfg.config
    s = cfg.settings
    return wrap_lines(
        f"{cfg.title} ({cfg.id}) — {cfg.profile_label}\n"
        f"dataset{'s' if len(cfg.datasets) > 1 else ''} {', '.join(cfg.datasets)}; models {_models(cfg)}; "
        f"{s.train.epochs} training epochs; {len(s.split.all_scenarios())} forget scenario(s); seeds {s.seeds}; "
        f"device {device}")


def paper_status(cfg: PaperConfig, runs: list[Run] | None = None) -> dict:
    """One row of the book's status table, for a paper's config (its ``paper`` profile): from its latest local run,
    or from the first of ``runs`` (a reference run)."""
    paper = cfg.id
    runs = latest_runs(paper) if runs is None else runs
    row = {"paper": cfg.title, "id": paper, "status": "not run yet", "profile": "–", "claims": "–", "date": "–"}
    if runs:
        run = runs[0]
        row.update(status="run", profile=run.profile, date=run.env.get("created", "")[:10])
        if run.profile == "smoke":
            row["claims"] = PIPELINE_ONLY
        elif not cfg.claims:  # the benchmark: a leaderboard, no claims of its own
            n_methods = run.metrics[run.metrics.method != "original"].method.nunique()
            row["claims"] = (f"no claims: a leaderboard of {n_methods} methods on "
                             f"{run.metrics.scenario.nunique()} scenarios × {len(run.datasets)} dataset(s)")
        else:
            v = claims_frame(run).verdict
            row["claims"] = (f"{(v == HOLDS).sum()} hold, {(v == FAILS).sum()} fail, {(v == INCONCLUSIVE).sum()} "
                             f"inconclusive, {(v == NOT_COMPARABLE).sum()} not comparable")
    return row


def header(cfg: PaperConfig | Run, note: str = ""):
    """What was available, what the paper claims, and which profile this is, before any number."""
    from IPython.display import Markdown

    if isinstance(cfg, Run):
        cfg = cfg.config
    warn_more = f"\n\n{note}" if note else ""  # e.g. a stale reference's notice
    label = cfg.profile_label.removeprefix(f"{cfg.profile} profile: ")
    leaderboard = not cfg.claims and not cfg.expected  # the benchmark: no paper, no claims
    warn = "" if cfg.profile == "paper" else (
        f"\n\n> **{cfg.profile} profile.** {label[:1].upper() + label[1:]}. Every number on this page comes from "
        f"this profile; " + ("the leaderboards compare the methods *in this run*, not in any paper's setting."
                             if leaderboard else "verdicts say whether the claim holds *in this run*, not in the "
                                                 "paper's setting."))
    if leaderboard:
        return Markdown(f"**Protocol.** {cfg.title}: {cfg.venue}. Code: {cfg.code}.\n\n**What it shows.** "
                        f"{cfg.headline}\n\n**Why.** {cfg.availability}{warn}{warn_more}")
    return Markdown(f"**Paper.** {cfg.title}. {cfg.authors}. {cfg.venue}. arXiv {cfg.arxiv}. "
                    f"Code: {cfg.code}.\n\n**Claim.** {cfg.headline}\n\n**Sources.** {cfg.availability}{warn}"
                    f"{warn_more}")
