"""make publish: the offline tarball, the gh-pages commit (local unless --push; pushed with it), clear errors, and
no absolute machine path in what the pages show."""

from __future__ import annotations

import subprocess
import tarfile

import pytest

from unlearnlib.publish import PublishError, commit_pages, publish, write_tarball


def git(repo, *args) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch):
    for k, v in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                 "GIT_COMMITTER_EMAIL": "t@t"}.items():
        monkeypatch.setenv(k, v)
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    (r / "README.md").write_text("x\n")
    git(r, "add", ".")
    git(r, "commit", "-q", "-m", "init")
    return r


@pytest.fixture
def html(tmp_path):
    h = tmp_path / "html"
    (h / "papers").mkdir(parents=True)
    (h / "index.html").write_text("<html>front page</html>")
    (h / "papers" / "benchmark.html").write_text("<html>chapter</html>")
    return h


def test_tarball_opens_offline_at_book_index(html, tmp_path):
    out = write_tarball(html, tmp_path / "book.tar.gz")
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert "book/index.html" in names and "book/papers/benchmark.html" in names
    assert not (tmp_path / "book.tar.gz.tmp").exists()


def test_tarball_of_an_unbuilt_book_is_refused(tmp_path):
    with pytest.raises(PublishError, match="no index.html: build the book first"):
        write_tarball(tmp_path, tmp_path / "book.tar.gz")
    assert not (tmp_path / "book.tar.gz").exists()


def test_without_a_remote_it_commits_locally_and_says_so(repo, html):
    done = commit_pages(html, repo)
    assert done["pushed"] is False and done["branch"] == "gh-pages"
    files = git(repo, "ls-tree", "-r", "--name-only", "gh-pages").split()
    assert sorted(files) == [".nojekyll", "index.html", "papers/benchmark.html"]
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"  # the work tree is untouched
    assert (repo / "README.md").exists() and not (repo / "index.html").exists()


def bare_remote(repo, tmp_path):
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    git(repo, "remote", "add", "origin", str(remote))
    return remote


def test_with_push_it_pushes_and_the_remote_head_moved(repo, html, tmp_path):
    remote = bare_remote(repo, tmp_path)
    done = commit_pages(html, repo, push=True)
    assert done["pushed"] is True
    assert git(remote, "rev-parse", "--short", "gh-pages") == done["commit"]
    (html / "index.html").write_text("<html>second edition</html>")
    again = commit_pages(html, repo, push=True)  # a second publication on top of the first
    assert again["commit"] != done["commit"]
    assert git(remote, "rev-parse", "--short", "gh-pages") == again["commit"]


def test_push_builds_on_what_others_pushed_since_the_last_fetch(repo, html, tmp_path):
    """CI pushes smoke/ to gh-pages too: a maintainer's publication must not fail as a non-fast-forward."""
    remote = bare_remote(repo, tmp_path)
    commit_pages(html, repo, push=True)
    other = tmp_path / "ci"
    subprocess.run(["git", "clone", "-q", "--branch", "gh-pages", str(remote), str(other)], check=True)
    (other / "smoke").mkdir()
    (other / "smoke" / "index.html").write_text("<html>smoke</html>")
    git(other, "add", "smoke")
    git(other, "commit", "-q", "-m", "CI: the smoke book")
    git(other, "push", "-q", "origin", "gh-pages")
    ci_head = git(remote, "rev-parse", "gh-pages")
    done = commit_pages(html, repo, push=True)
    assert git(remote, "rev-parse", "--short", "gh-pages") == done["commit"]
    assert git(remote, "rev-parse", "gh-pages~1") == ci_head  # on top of CI's commit, not forced over it


def test_without_push_nothing_is_pushed_even_with_a_remote(repo, html, tmp_path):
    remote = bare_remote(repo, tmp_path)
    done = commit_pages(html, repo)
    assert done["pushed"] is False
    assert git(repo, "rev-parse", "--short", "gh-pages") == done["commit"]  # committed locally
    assert subprocess.run(["git", "rev-parse", "--verify", "-q", "gh-pages"], cwd=remote).returncode != 0


def test_a_failed_push_is_one_publish_error_saying_what_was_committed(repo, html, tmp_path):
    git(repo, "remote", "add", "origin", str(tmp_path / "no-such-remote.git"))  # a bogus origin
    with pytest.raises(PublishError) as exc:
        commit_pages(html, repo, push=True)
    head = git(repo, "rev-parse", "--short", "gh-pages")
    msg = str(exc.value)
    assert msg.startswith(f"committed {head} to the local branch gh-pages; the push to origin failed (")
    assert msg.endswith("push it yourself: git push origin gh-pages")


def test_push_without_the_remote_is_refused_before_committing(repo, html):
    with pytest.raises(PublishError, match=r"--push: this repository has no remote 'origin'"):
        commit_pages(html, repo, push=True)
    assert subprocess.run(["git", "rev-parse", "--verify", "-q", "gh-pages"], cwd=repo).returncode != 0


def test_a_commit_that_ghp_import_did_not_make_is_not_reported_as_published(repo, html, monkeypatch):
    import ghp_import

    monkeypatch.setattr(ghp_import, "run_import", lambda *a, **k: print("Failed to process commit."))
    with pytest.raises(PublishError, match="ghp-import made no commit on gh-pages"):
        commit_pages(html, repo)


def test_cli_publish_pushes_only_with_push(repo, html, tmp_path, monkeypatch, capsys):
    import unlearnlib.publish as pub
    from unlearnlib import cli

    remote = bare_remote(repo, tmp_path)
    book_dir = tmp_path / "book"  # publish() reads <book>/papers/*.ipynb and publishes <book>/_build/html
    (book_dir / "papers").mkdir(parents=True)
    (book_dir / "papers" / "unsir.ipynb").write_text("{}")
    (book_dir / "_build").mkdir()
    html.rename(book_dir / "_build" / "html")
    real = pub.publish
    monkeypatch.setattr(pub, "publish", lambda **kw: real(**{**kw, "book_dir": book_dir, "repo": repo,
                                                            "tarball": tmp_path / "book.tar.gz"}))
    cli.main(["publish", "--no-build"])
    assert "not pushed (to push: `make publish PUSH=1`" in capsys.readouterr().out
    assert subprocess.run(["git", "rev-parse", "--verify", "-q", "gh-pages"], cwd=remote).returncode != 0
    cli.main(["publish", "--no-build", "--push"])
    assert "and pushed it to origin" in capsys.readouterr().out
    assert git(remote, "rev-parse", "gh-pages") == git(repo, "rev-parse", "gh-pages")
    git(repo, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    with pytest.raises(SystemExit) as exit_:  # a failed push: one error line, exit 2, no traceback
        cli.main(["publish", "--no-build", "--push"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: committed ") and err.count("\n") == 1 and "git push origin gh-pages" in err


def test_the_results_line_names_no_absolute_path(tmp_path, monkeypatch):
    """run_paper's last line is printed into the notebook, and so into the pages."""
    from unlearnlib.harness import done_line
    from unlearnlib.paths import REPO_ROOT

    monkeypatch.setenv("UNLEARNLIB_RESULTS", str(tmp_path / "results"))
    line = done_line(12.3, 4, 5, tmp_path / "results" / "unsir" / "smoke")
    assert line == "== done in 12 s: 4 cells computed, 5 reused; results in $UNLEARNLIB_RESULTS/unsir/smoke"
    monkeypatch.delenv("UNLEARNLIB_RESULTS")
    assert done_line(1, 0, 3, REPO_ROOT / "results" / "unsir" / "cpu").endswith("results in results/unsir/cpu")
    assert str(tmp_path) not in done_line(1, 0, 3, tmp_path / "elsewhere" / "unsir" / "cpu")


def test_publish_needs_an_executed_chapter(tmp_path, repo):
    (tmp_path / "book").mkdir()
    with pytest.raises(PublishError, match=r"no executed chapter .* run `make reproduce PAPER=<id>` first"):
        publish(book_dir=tmp_path / "book", repo=repo, build=False)


def test_publish_outside_a_git_repository_is_one_clear_error(html, tmp_path):
    with pytest.raises(PublishError, match="is not a git repository"):
        commit_pages(html, tmp_path)
