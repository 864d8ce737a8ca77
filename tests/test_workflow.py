"""The CI workflow (.github/workflows/book.yml): no step that installs packages or runs the project's code holds a
token that can write; actions pinned by commit; the smoke book is published only under smoke/, from main, after the
tests passed, by a job that runs no project code."""

from __future__ import annotations

import re

import pytest
import yaml

from unlearnlib.paths import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "book.yml"
PINNED = re.compile(r"[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}")


@pytest.fixture(scope="module")
def wf() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def writes(permissions) -> bool:
    if isinstance(permissions, str):  # write-all / read-all
        return "write" in permissions
    return any(v == "write" for v in (permissions or {}).values())


def scripts(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_nothing_can_write_outside_the_publish_job(wf):
    assert not writes(wf.get("permissions", "write-all"))  # absent would mean the repository's default
    assert "pull_request_target" not in (wf.get("on") or wf.get(True))  # PyYAML reads the key `on` as True
    for name, job in wf["jobs"].items():
        if name != "publish":
            assert "permissions" in job and not writes(job["permissions"]), name


def test_the_test_job_keeps_no_credentials_and_uploads_the_smoke_book(wf):
    job = wf["jobs"]["test"]
    assert job["permissions"] == {"contents": "read"}
    checkouts = [s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@")]
    assert checkouts and all(s.get("with", {}).get("persist-credentials") is False for s in checkouts)
    assert "make test" in scripts(job)
    upload = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload and upload[0]["with"]["name"] == "book-smoke"


def test_every_action_is_pinned_by_commit(wf):
    uses = [s["uses"] for job in wf["jobs"].values() for s in job["steps"] if "uses" in s]
    assert uses and all(PINNED.fullmatch(u) for u in uses), [u for u in uses if not PINNED.fullmatch(u)]


def test_publish_runs_on_main_after_the_tests_reference_book_at_the_root_smoke_under_smoke(wf):
    job = wf["jobs"]["publish"]
    needs = job["needs"] if isinstance(job["needs"], list) else [job["needs"]]
    assert "test" in needs
    assert job["if"].replace('"', "'") == "github.ref == 'refs/heads/main'"
    assert job["permissions"] == {"contents": "write"}
    run = scripts(job)
    # no project code and no package installed with the write token
    assert not re.search(r"\b(make|pip|python3?|\.venv|npm|unlearnlib|ghp-import)\b", run), run
    # the smoke book replaces smoke/ only; the root is replaced only by the reference book (issue 21), keeping smoke/
    removals = re.findall(r"\brm\b[^\n;&|]*", run)
    assert removals and all(r.split()[-1].rstrip("/") == "smoke" or r.startswith("rm -rf -- {}") for r in removals)
    root_clear = "find . -mindepth 1 -maxdepth 1 ! -name .git ! -name smoke -exec rm -rf -- {} +"
    assert run.count("-exec rm") == 1 and root_clear in run
    block = run[run.index("if [ -d ../reference-html/html ]"):]
    assert block.index(root_clear) < block.index("\nfi\n")  # only when a reference book was built
    assert "cp -R ../reference-html/html/. ." in block and "cp -R ../html/. ." not in run
    assert "deleteall" not in run and "--force" not in run and "push -f" not in run
    assert "cp -R ../html/. smoke/" in run and "git push origin gh-pages" in run


def test_the_reference_book_is_built_on_main_only_from_references_and_prs_build_the_smoke_book(wf):
    triggers = wf.get("on") or wf.get(True)
    assert "pull_request" in triggers and "push" in triggers
    steps = wf["jobs"]["test"]["steps"]
    ref = [s for s in steps if "--source reference" in s.get("run", "")]
    assert len(ref) == 1 and "refs/heads/main" in ref[0]["if"] and "reference/" in ref[0]["if"]
    smoke = [s for s in steps if "build/book-test/papers" in s.get("run", "")]
    assert smoke and "--source executed" in smoke[0]["run"] and "if" not in smoke[0]  # every push and PR
    uploads = {s["with"]["name"]: s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")}
    assert set(uploads) == {"book-smoke", "book-reference"} and "if" in uploads["book-reference"]
