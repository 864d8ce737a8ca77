"""The book's list of papers comes from the paper YAMLs alone; its scratch files never reach the book."""

from __future__ import annotations

import shutil

import yaml

import unlearnlib.config as config_mod
from unlearnlib import book

SUITE_ORDER = ["deep_unlearning", "unsir", "layer_attack_unlearning", "lightweight_unlearning",
               "versatile_unlearning"]


def test_suite_lists_every_paper_in_book_order():
    assert [pid for pid, _ in book.suite()] == SUITE_ORDER
    titles = dict(book.suite())
    assert titles["deep_unlearning"].startswith("Deep Unlearning (Kodge")


def test_a_new_paper_yaml_reaches_the_toc_and_status_table_without_python_edits(tmp_path, monkeypatch):
    papers = tmp_path / "papers"
    shutil.copytree(config_mod.PAPERS_DIR, papers)
    raw = yaml.safe_load((papers / "unsir.yaml").read_text())
    raw.update(id="zz_new", chapter="A new paper (Someone; 2027)", order=0)
    (papers / "zz_new.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.setattr(config_mod, "PAPERS_DIR", papers)
    assert [pid for pid, _ in book.suite()] == ["zz_new", *SUITE_ORDER]
    book_dir = tmp_path / "book"
    (book_dir / "papers").mkdir(parents=True)
    for pid in ("zz_new", "unsir"):
        (book_dir / "papers" / f"{pid}.ipynb").write_text("{}")
    (book_dir / "papers" / ".unsir.partial.ipynb").write_text("{}")  # a killed run's scratch file
    assert book.write_generated(book_dir) == ["zz_new", "unsir"]
    toc = (book_dir / "_toc.yml").read_text()
    assert "papers/zz_new" in toc and "partial" not in toc and "- file: judging" in toc
    assert (book_dir / "_generated" / "judging.png").stat().st_size > 10_000
    status = (book_dir / "_generated" / "status.md").read_text()
    assert "[A new paper (Someone; 2027)](papers/zz_new.ipynb)" in status
    assert "not run yet" in status


def test_the_book_excludes_hidden_files():
    cfg = yaml.safe_load((book.BOOK_DIR / "_config.yml").read_text())
    assert "**/.*" in cfg["exclude_patterns"]
