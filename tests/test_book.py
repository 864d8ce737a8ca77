"""The book's list of papers comes from the paper YAMLs alone; its scratch files never reach the book."""

from __future__ import annotations

import os
import shutil

import pytest
import yaml

import unlearnlib.config as config_mod
from unlearnlib import book

SUITE_ORDER = ["deep_unlearning", "unsir", "layer_attack_unlearning", "lightweight_unlearning",
               "versatile_unlearning", "benchmark"]


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


def test_executed_notebooks_keep_log_lines_but_not_progress_bar_debris(tmp_path):
    import nbformat

    from unlearnlib.cli import tidy_notebook

    nb = nbformat.v4.new_notebook()
    outs = [nbformat.v4.new_output("stream", name="stdout", text="== run\n"),
            nbformat.v4.new_output("stream", name="stderr", text="\rtrain  10%|#  | 1/10"),
            nbformat.v4.new_output("stream", name="stderr", text="\rtrain  90%|## | 9/10"),
            nbformat.v4.new_output("stream", name="stderr", text="\r              \r"),
            nbformat.v4.new_output("stream", name="stderr", text="   [1/2] original trained\n"),
            nbformat.v4.new_output("stream", name="stderr", text="\r"),
            nbformat.v4.new_output("stream", name="stderr", text="\r"),
            nbformat.v4.new_output("display_data", data={"text/plain": "table"}),
            nbformat.v4.new_output("stream", name="stderr", text="\r")]
    nb.cells = [nbformat.v4.new_code_cell("run()", outputs=outs), nbformat.v4.new_markdown_cell("text")]
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, str(path))
    tidy_notebook(path)
    got = nbformat.read(str(path), as_version=4).cells[0].outputs
    assert [o.output_type for o in got] == ["stream", "stream", "display_data"]
    assert got[0].text == "== run\n"
    assert got[1].name == "stderr" and got[1].text == "   [1/2] original trained\n"


def test_scratch_notebooks_of_dead_runs_are_cleared(tmp_path):
    import os
    import subprocess
    import sys

    from unlearnlib.cli import clear_stale_partials

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"unsir.{dead.pid}.ipynb").write_text("{}")
    (tmp_path / f"unsir.{os.getpid()}.ipynb").write_text("{}")  # a live run's file stays
    (tmp_path / "notes.ipynb").write_text("{}")  # not a scratch name: left alone
    gone = clear_stale_partials(tmp_path)
    assert [p.name for p in gone] == [f"unsir.{dead.pid}.ipynb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"unsir.{os.getpid()}.ipynb", "notes.ipynb"])


def test_notebooks_side_by_side_name_the_one_that_failed_and_show_its_log(tmp_path, monkeypatch, capsys):
    """book-test --jobs N: a notebook that fails in its worker process is named, its log shown, exit code 2."""

    from unlearnlib.cli import _execute_side_by_side

    monkeypatch.delenv("UNLEARNLIB_THREADS", raising=False)
    before = dict(os.environ)
    scratch = tmp_path / "book-test"
    with pytest.raises(SystemExit) as exit_:
        _execute_side_by_side(["no_such_paper", "nor_this_one"], scratch, jobs=2, cores=2)
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert "2 at once, 1 torch thread(s) each" in out  # the kernels' share of the cores: 2 cores / 2 jobs
    assert "no_such_paper: FAILED" in out and "no notebook notebooks/no_such_paper.ipynb" in out  # its log
    assert "notebook(s) no_such_paper, nor_this_one failed" in err
    assert (tmp_path / "book-test-logs" / "nor_this_one.log").exists() and not (scratch / "papers").exists()
    assert dict(os.environ) == before  # the share reached the workers, not this process


def test_book_test_refuses_to_delete_a_folder_it_did_not_write(tmp_path, monkeypatch, capsys):
    """book-test --dir DIR deletes DIR first: only when it is empty or a previous book-test wrote it."""
    from unlearnlib import cli

    def never(*a, **k):
        raise RuntimeError("a notebook would run")

    monkeypatch.setattr(cli, "available_papers", lambda: ["unsir"])
    monkeypatch.setattr(cli, "execute_notebook", never)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["book-test", "--dir", str(mine)])
    assert exit_.value.code == 2
    assert (mine / "thesis.tex").read_text() == "years of work" and sorted(os.listdir(mine)) == ["thesis.tex"]
    err = capsys.readouterr().err
    assert err.startswith(f"error: --dir {mine}: the folder is not empty and no book-test wrote it")


def test_book_test_folder_carries_its_marker_and_is_reused(tmp_path):
    from unlearnlib.cli import BOOK_TEST_MARKER, prepare_book_test_dir

    d = prepare_book_test_dir(tmp_path / "bt", book.BOOK_DIR)  # a new folder
    assert (d / BOOK_TEST_MARKER).is_file() and (d / "_config.yml").exists() and not (d / "papers").exists()
    (d / "papers").mkdir()
    (d / "papers" / "stale.ipynb").write_text("{}")  # what the last book-test executed
    assert prepare_book_test_dir(d, book.BOOK_DIR) == d  # its own folder: cleared and written again
    assert not (d / "papers").exists() and (d / BOOK_TEST_MARKER).is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (prepare_book_test_dir(empty, book.BOOK_DIR) / "_config.yml").exists()  # an empty folder is fine


def _lock_is_free(path) -> bool:
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another open file description: conflicts with a holder
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_a_book_build_holds_the_build_lock_while_jupyter_book_runs(tmp_path, monkeypatch):
    """Two builds of one book folder at once: the second waits on <book>/_build/.build.lock (D17)."""
    import subprocess

    lock = tmp_path / "_build" / ".build.lock"
    seen = []

    def fake_jupyter_book(cmd, cwd):
        seen.append(_lock_is_free(lock))
        (tmp_path / "_build" / "html").mkdir(parents=True)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(book, "ensure_mathjax", lambda d: None)
    monkeypatch.setattr(book, "write_generated", lambda d: [])
    monkeypatch.setattr(book.subprocess, "run", fake_jupyter_book)
    assert book.build(tmp_path) == tmp_path.resolve() / "_build" / "html" / "index.html"
    assert seen == [False]  # held during the build
    assert _lock_is_free(lock)  # and released after it


def test_the_offline_check_finds_every_kind_of_request_to_another_host(tmp_path):
    """Known answer on hand-written pages: tags, srcset, <object data>, media, inline and linked CSS (D18)."""
    (tmp_path / "papers").mkdir()
    (tmp_path / "_static").mkdir()
    (tmp_path / "papers" / "page.html").write_text("""<html><head>
<script src="https://cdn.example/x.js"></script>
<link rel="canonical" href="https://book.example/page.html">
<link rel="stylesheet" href="../_static/local.css">
<style>@import "https://fonts.example/f.css"; .a { background: url(../_static/ok.png) }</style>
</head><body>
<a href="https://paper.example/abs">a hyperlink is not a request</a>
<img src="../_static/fig.png" srcset="../_static/fig.png 1x, https://img.example/fig@2x.png 2x" alt="">
<picture><source srcset="//img.example/fig.webp"></picture>
<object data="//evil.example/x.swf"></object>
<video src="https://v.example/clip.mp4" poster="../_static/p.png"></video>
<audio src='http://a.example/a.mp3'></audio>
<div style="background: url('//bg.example/i.png')" data-src="https://lazy.example/not-fetched.png"></div>
<img src=../_static/unquoted.png>
</body></html>""")
    (tmp_path / "_static" / "site.css").write_text("""@import "../basic.css";
@import url("https://fonts.example/a.css");
/* url(https://comment.example/ignored.png) */
.x { background: url(//img.example/y.png); }
.y { background: url(data:image/png;base64,AAAA); }
@font-face { src: url("fonts/x.woff2") format("woff2"); }
""")
    (tmp_path / "index.html").write_text('<html><body><img src="_static/logo.png"></body></html>')
    assert book.external_requests(tmp_path) == [
        "_static/site.css: https://fonts.example/a.css",
        "_static/site.css: //img.example/y.png",
        "papers/page.html: https://cdn.example/x.js",
        "papers/page.html: https://img.example/fig@2x.png",
        "papers/page.html: //img.example/fig.webp",
        "papers/page.html: //evil.example/x.swf",
        "papers/page.html: https://v.example/clip.mp4",
        "papers/page.html: http://a.example/a.mp3",
        "papers/page.html: https://fonts.example/f.css",
        "papers/page.html: //bg.example/i.png",
    ]
