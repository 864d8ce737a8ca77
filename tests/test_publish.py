"""make publish: the offline tarball, the gh-pages commit (local without a remote, pushed with one), clear errors."""

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


def test_with_a_remote_it_pushes(repo, html, tmp_path):
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    git(repo, "remote", "add", "origin", str(remote))
    done = commit_pages(html, repo)
    assert done["pushed"] is True
    assert git(remote, "rev-parse", "--short", "gh-pages") == done["commit"]


def test_publish_needs_an_executed_chapter(tmp_path, repo):
    (tmp_path / "book").mkdir()
    with pytest.raises(PublishError, match=r"no executed chapter .* run `make reproduce PAPER=<id>` first"):
        publish(book_dir=tmp_path / "book", repo=repo, build=False)


def test_publish_outside_a_git_repository_is_one_clear_error(html, tmp_path):
    with pytest.raises(PublishError, match="is not a git repository"):
        commit_pages(html, tmp_path)
