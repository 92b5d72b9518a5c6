"""One-off runs (``paasport run``, job actions) as the read model shows them: the JSON of one
run (``status --json``, the API) and its status entry. Pure."""

from __future__ import annotations

from typing import Any

from paasport.engine.base import OneOff


def run_json(run: OneOff) -> dict[str, Any]:
    return {
        "run_id": run.run_id, "task_id": run.task_id, "kind": run.kind, "service": run.service,
        "instance": run.instance, "cluster": run.cluster, "git_sha": run.git_sha,
        "command": run.command, "state": run.state, "exit_code": run.exit_code,
        "started": run.started, "finished": run.finished, "node": run.node, "by": run.by,
        "labels": dict(run.extra),
    }  # fmt: skip


def run_line(run: OneOff, now: float) -> str:
    """For people: "run 3fa9c2d1 running for 12s (by root@vm): echo hi"."""
    if run.done:
        age = f"exited {run.exit_code}"
    else:
        age = f"{run.state} for {max(0.0, now - run.started):.0f}s"
    what = "job run" if run.kind == "job" else "one-off run"
    by = f" (by {run.by})" if run.by else ""
    return f"{what} {run.run_id} {age}{by}: {run.command or '(the image command)'}"


def run_entry(run: OneOff, now: float) -> dict[str, Any]:
    """A status entry of a one-off run: an instance entry's keys, nothing of an instance
    observed, ``run`` set; ``ok`` (a run never makes a status fail)."""
    from paasport.view.status import unobserved_entry

    entry = unobserved_entry(run.service, run.instance, run.cluster, "One-off run",
                             run_line(run, now), ())  # fmt: skip
    return {**entry, "ok": True, "run": run_json(run)}
