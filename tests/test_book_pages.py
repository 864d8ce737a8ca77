"""The book a reader gets from a clone (issue 21): every chapter rendered from a stored run (yours, else ours), a
"no run yet" page where there is neither, a status table that reads both, tables that fit a 1,400 px page and no
absolute path of the building machine."""

from __future__ import annotations

import json
import shutil

import pandas as pd

from unlearnlib import book
from unlearnlib.results.tables import MAX_COLUMNS, Tables, column_parts

DU_COLUMNS = ["scenarios", "model", "method", "ACC_r test (%)", "paper: ACC_r test (%)", "ACC_f test (%)",
              "paper: ACC_f test (%)", "SVC MIA (%)", "paper: SVC MIA (%)",
              "linear-probe recovery: forget-class test acc (%)", "relearn time (epochs)", "time (s)",
              "speed-up vs retrain (x)"]


def test_a_wide_results_table_is_split_with_the_row_labels_repeated():
    parts = column_parts(DU_COLUMNS)
    assert parts == [DU_COLUMNS[:9], DU_COLUMNS[:3] + DU_COLUMNS[9:]]
    assert all(len(p) <= MAX_COLUMNS for p in parts)
    assert column_parts(DU_COLUMNS[:7]) == [DU_COLUMNS[:7]]  # a narrow table stays whole
    # a metric stays beside its paper column, even where that makes the first part shorter
    cols = ["model", "method", "a", "b", "c", "d", "e", "f", "g", "paper: g"]
    assert column_parts(cols) == [cols[:8], ["model", "method", "g", "paper: g"]]


def test_tables_show_every_part_and_the_caption_of_the_first():
    df = pd.DataFrame({c: ["1"] for c in DU_COLUMNS})
    parts = column_parts(DU_COLUMNS)
    t = Tables([df[p].style.hide(axis="index").set_caption(f"part {i}") for i, p in enumerate(parts)])
    html = t._repr_html_()
    assert html.count("<table") == 2 and "part 0" in html and "part 1" in html and t.caption == "part 0"
    for table in html.split("</table>")[:-1]:
        assert table.count("<th ") <= MAX_COLUMNS


def test_the_chapter_banner_fits_the_page_for_every_paper_and_profile():
    from unlearnlib.config import PROFILES, available_papers, load_paper
    from unlearnlib.results.page import BANNER_WIDTH, banner, wrap_lines

    for paper in available_papers():
        for profile in PROFILES:
            text = banner(load_paper(paper, profile), "cuda:0")
            assert max(map(len, text.split("\n"))) <= BANNER_WIDTH, (paper, profile)
            assert " ".join(text.split()).startswith(load_paper(paper, profile).title)  # folded, not cut
    long = "numbers: reference run, 2026-12-05, commit abc1234, " + "AMD EPYC 7B13 64-Core Processor " * 4
    folded = wrap_lines(long)
    assert folded.startswith("numbers: reference run, ") and " ".join(folded.split()) == " ".join(long.split())
    assert all(len(line) <= BANNER_WIDTH for line in folded.split("\n"))
    assert wrap_lines("a\n\nb") == "a\n\nb"  # an empty line stays


def test_the_data_summary_names_no_absolute_path(tmp_path):
    from unlearnlib.results import Run

    run = Run.__new__(Run)
    run.env = {"data": {"dataset": "fashion_mnist", "source": "/usr/share/datasets/fashion-mnist"}, "seeds": [1],
               "device": "cpu", "device_name": "x86_64", "cpu_threads": [2]}
    run.metrics = pd.DataFrame({"scenario": ["class0"]})
    text = run.data_summary().to_string()
    assert "/usr/share" not in text and "fashion-mnist" in text


def test_make_book_renders_stored_runs_and_a_no_run_page(tmp_path, monkeypatch):
    """render_chapters: each paper from book_choice (mocked here: which run exists), a page for a paper with none;
    the table of contents and the status table follow."""
    from unlearnlib import cli
    from unlearnlib.results import reference as R

    calls = []

    def fake_execute(paper, profile, out_dir, **kw):
        calls.append((paper, profile, kw.get("source")))
        out_dir.mkdir(parents=True, exist_ok=True)
        nb = {"cells": [], "metadata": {"papermill": {"parameters": {"profile": profile, "source": kw["source"]}}},
              "nbformat": 4, "nbformat_minor": 5}
        (out_dir / f"{paper}.ipynb").write_text(json.dumps(nb))
        return out_dir / f"{paper}.ipynb"

    choices = {"unsir": ("cpu", "reference"), "deep_unlearning": ("cpu", "auto")}
    monkeypatch.setattr(cli, "execute_notebook", fake_execute)
    monkeypatch.setattr(R, "book_choice", lambda pid, source="auto": choices.get(pid))
    book_dir = tmp_path / "book"
    shutil.copytree(book.BOOK_DIR, book_dir, ignore=shutil.ignore_patterns("_build", "papers", "_generated",
                                                                           "_toc.yml", "_assets"))
    (book_dir / "papers").mkdir()
    (book_dir / "papers" / "benchmark.ipynb").write_text("{}")  # a stale chapter of an earlier build
    shown = cli.render_chapters(book_dir, "auto")
    assert sorted(calls) == [("deep_unlearning", "cpu", "auto"), ("unsir", "cpu", "reference")]
    assert shown["unsir"] == "cpu (reference)" and shown["benchmark"] == "no run yet"
    page = (book_dir / "papers" / "benchmark.md").read_text()
    assert "No run yet" in page and "make reproduce PAPER=benchmark" in page
    assert not (book_dir / "papers" / "benchmark.ipynb").exists()
    monkeypatch.setattr(book, "judging_figure", lambda path: None)
    monkeypatch.setattr("unlearnlib.performance.write_page", lambda gen: None)
    chapters = book.write_generated(book_dir)
    assert len(chapters) == 6  # every paper has a chapter: a rendered run or its "no run yet" page
    toc = (book_dir / "_toc.yml").read_text()
    assert "papers/benchmark" in toc and "papers/unsir" in toc
    status = (book_dir / "_generated" / "status.md").read_text()
    assert "| chapter shows |" in status and "our reference run" in status
    assert "(papers/benchmark.md)" in status


def test_the_performance_page_reads_the_reference_benchmarks_when_you_measured_none(tmp_path, monkeypatch):
    import pytest

    from unlearnlib import performance
    from unlearnlib.harness.reference import copy_benchmarks
    from unlearnlib.paths import results_root
    from unlearnlib.schema import ConfigError

    monkeypatch.setenv("UNLEARNLIB_REFERENCE", str(tmp_path / "reference"))
    with pytest.raises(ConfigError, match="make benchmarks"):
        copy_benchmarks()
    mine = results_root() / "benchmarks"
    (mine / "gpu").mkdir(parents=True)
    df = pd.DataFrame({"method": ["ssd", "retrain"], "seconds": [2.0, 40.0]})
    df.to_csv(mine / "methods.csv", index=False)
    df.to_csv(mine / "gpu" / "gpu_check.csv", index=False)
    assert performance.bench_root() == mine
    ref = copy_benchmarks(say=lambda s: None)
    assert sorted(p.relative_to(ref).as_posix() for p in ref.rglob("*.gz")) == ["gpu/gpu_check.csv.gz",
                                                                                "methods.csv.gz"]
    shutil.rmtree(mine)
    assert performance.bench_root() == ref  # nothing measured here: ours
    pd.testing.assert_frame_equal(performance._read(ref / "methods.csv"), df)
    mine.mkdir()
    df.to_csv(mine / "methods.csv", index=False)
    assert performance.bench_root() == mine  # yours win


def test_make_book_falls_back_to_the_reference_when_your_run_cannot_be_rendered(tmp_path, monkeypatch):
    import pytest

    from unlearnlib import cli
    from unlearnlib.results import reference as R

    calls = []

    def execute(paper, profile, out_dir, **kw):
        calls.append((paper, profile, kw["source"]))
        if kw["source"] == "auto":
            raise SystemExit(2)  # execute_notebook's one error line, then exit 2
        return out_dir / f"{paper}.ipynb"

    monkeypatch.setattr(cli, "execute_notebook", execute)
    monkeypatch.setattr(book, "suite", lambda: [("unsir", "UNSIR")])
    monkeypatch.setattr(R, "book_choice", lambda pid, source="auto": ("cpu", "reference") if source == "reference"
                        else ("paper", "auto"))
    assert cli.render_chapters(tmp_path, "auto") == {"unsir": "cpu (reference)"}
    assert calls == [("unsir", "paper", "auto"), ("unsir", "cpu", "reference")]
    monkeypatch.setattr(R, "book_choice", lambda pid, source="auto": None if source == "reference"
                        else ("paper", "auto"))
    with pytest.raises(SystemExit):  # no reference to fall back on: the error stands
        cli.render_chapters(tmp_path, "auto")
