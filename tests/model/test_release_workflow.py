"""The GitHub Actions workflow is valid YAML and calls the make targets that exist."""

from __future__ import annotations

import re

import yaml

from tests.conftest import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "ci.yml"


def load_workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def job_commands(job: dict) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def test_workflow_triggers():
    workflow = load_workflow()
    # YAML 1.1 reads the bare key `on` as True; GitHub reads it as "on".
    triggers = workflow.get("on", workflow.get(True))
    assert "pull_request" in triggers
    assert triggers["push"]["branches"] == ["main"]


def test_pull_request_runs_make_test():
    job = load_workflow()["jobs"]["test"]
    assert "make test" in job_commands(job)
    assert "if" not in job


def test_main_push_runs_make_release():
    job = load_workflow()["jobs"]["release"]
    assert "make release" in job_commands(job)
    assert job["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert job["needs"] == "test"


def test_workflow_targets_in_makefile():
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    jobs = load_workflow()["jobs"].values()
    called = {match for job in jobs for command in job_commands(job) for match in re.findall(r"\bmake (\w+)", command)}
    defined = set(re.findall(r"^([\w-]+):", makefile, flags=re.MULTILINE))
    assert called == {"test", "release"}
    assert called <= defined, f"Makefile lacks the targets {sorted(called - defined)}"
