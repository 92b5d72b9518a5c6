"""Benchmark: generate-deployments and mark-for-deployment on a repo with 5,000 tags, 50 groups.

Run: ``.venv/bin/python bench/deployments.py``. Prints each figure, with the part spent inside
``git`` itself (subprocesses) split out. Targets: generate < 0.5 s; mark < 0.2 s + git's time.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from paasport.deploy import git as git_adapter
from paasport.deploy import tags, workflow
from paasport.deploy.git import GitRepo

GROUPS = 50
INSTANCES_PER_GROUP = 2
DEPLOY_TAGS = 3000
CONTROL_TAGS = 2000
COMMITS = 200
BASE_TIME = 1_600_000_000
RUNS = 7


def run(cwd: Path, *args: str, stdin: bytes | None = None) -> str:
    out = subprocess.run(
        ["git", *args], cwd=cwd, input=stdin, capture_output=True, check=True, timeout=60
    )
    return out.stdout.decode().strip()


def build_repo(root: Path) -> tuple[Path, list[str]]:
    """COMMITS commits, then DEPLOY_TAGS + CONTROL_TAGS tags: half annotated (fast-import)."""
    repo = root / "repo"
    run(root, "init", "-q", "-b", "main", str(repo))
    stream: list[str] = []
    for i in range(COMMITS):
        msg = f"commit {i}\n"
        stream += [
            "commit refs/heads/main",
            f"mark :{i + 1}",
            f"committer Dev <dev@example.com> {BASE_TIME + i} +0000",
            f"data {len(msg)}",
            msg.rstrip("\n"),
            f"M 644 inline file{i % 10}.txt",
            "data 2",
            f"{i % 10}",
            "",
        ]
    refs: list[tuple[str, int]] = []  # (tag name, commit mark)
    for n in range(DEPLOY_TAGS):
        group = f"group{n % GROUPS}.main"
        stamp = tags.format_timestamp(BASE_TIME + n * 60)
        refs.append((tags.deploy_tag_name(group, stamp), 1 + (n * 7) % COMMITS))
    for n in range(CONTROL_TAGS):
        branch_group = n % GROUPS
        stamp = tags.format_timestamp(BASE_TIME + n * 60 + 30)
        state: tags.ControlState = "stop" if n % 3 == 0 else "start"
        refs.append(
            (
                tags.control_tag_name(
                    "local", f"i{branch_group}x{n % INSTANCES_PER_GROUP}", stamp, state
                ),
                1 + (n * 11) % COMMITS,
            )
        )
    lightweight: list[tuple[str, int]] = []
    for i, (name, mark) in enumerate(refs):
        if i % 2 == 0:
            msg = f"bench {name}\n"
            stream += [
                f"tag {name}",
                f"from :{mark}",
                f"tagger Bench <bench@example.com> {BASE_TIME + i} +0000",
                f"data {len(msg)}",
                msg.rstrip("\n"),
                "",
            ]
        else:
            lightweight.append((name, mark))
    marks_file = root / "marks"
    run(
        repo,
        "fast-import",
        "--quiet",
        f"--export-marks={marks_file}",
        stdin=("\n".join(stream) + "\n").encode(),
    )
    marks = dict(line.split() for line in marks_file.read_text().splitlines())
    updates = "".join(
        f"create refs/tags/{name} {marks[f':{mark}']}\n" for name, mark in lightweight
    )
    run(repo, "update-ref", "--stdin", stdin=updates.encode())
    run(repo, "pack-refs", "--all")
    shas = [marks[f":{i + 1}"] for i in range(COMMITS)]
    return repo, shas


def build_soa(root: Path, repo: Path) -> Path:
    soa = root / "soa"
    svc = soa / "bench"
    svc.mkdir(parents=True)
    (svc / "service.yaml").write_text(f"description: bench\ngit_url: {repo}\n")
    steps = "".join(f"  - step: group{g}.main\n" for g in range(GROUPS))
    (svc / "deploy.yaml").write_text("pipeline:\n" + steps)
    instances = "".join(
        f"i{g}x{k}:\n  deploy_group: group{g}.main\n  cmd: sleep 1\n"
        for g in range(GROUPS)
        for k in range(INSTANCES_PER_GROUP)
    )
    (svc / "instances-local.yaml").write_text(instances)
    return soa


class GitClock:
    """Adds up the wall time spent in git subprocesses (the adapter's one ``_run``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._real = git_adapter._run

    @contextmanager
    def installed(self) -> Iterator[None]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return self._real(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        git_adapter._run = timed  # type: ignore[assignment]
        try:
            yield
        finally:
            git_adapter._run = self._real  # type: ignore[assignment]


def measure(label: str, fn: Callable[[], object]) -> None:
    totals: list[float] = []
    gits: list[float] = []
    for _ in range(RUNS):
        clock = GitClock()
        with clock.installed():
            start = time.perf_counter()
            fn()
            totals.append(time.perf_counter() - start)
        gits.append(clock.seconds)
    total, in_git = statistics.median(totals), statistics.median(gits)
    print(
        f"{label:<44} median {total * 1000:7.1f} ms  (git {in_git * 1000:6.1f} ms, "
        f"paasport {(total - in_git) * 1000:6.1f} ms)  min {min(totals) * 1000:6.1f} ms"
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="paasport-bench-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        repo, shas = build_repo(root)
        soa = build_soa(root, repo)
        count = len(run(repo, "tag", "--list").splitlines())
        print(
            f"repo: {count} tags ({GROUPS} deploy groups, {GROUPS * INSTANCES_PER_GROUP} "
            f"instances), {COMMITS} commits; built in {time.perf_counter() - start:.2f} s"
        )

        from paasport.config.tree import load_tree

        tree = load_tree(soa, ["bench"])
        target = workflow.target_from_tree(tree, "bench")
        assert len(target.control_branches) == GROUPS * INSTANCES_PER_GROUP

        with GitRepo(str(repo)) as r:
            refs = r.ls_remote()
        print(f"ls-remote lines: {len(refs)}")

        def pure() -> None:
            tags.deployments_from_refs("bench", refs, target.control_branches)

        def generate() -> None:
            with GitRepo(str(repo)) as r:
                workflow.generate(target, r)

        def generate_with_config() -> None:
            t = workflow.target_from_tree(load_tree(soa, ["bench"]), "bench")
            with GitRepo(str(repo)) as r:
                workflow.generate(t, r)

        counter = iter(range(10**6))

        def mark() -> None:
            sha = shas[next(counter) % COMMITS]
            with GitRepo(str(repo)) as r:
                workflow.mark_for_deployment(target, r, "group7.main", sha[:10], now=time.time())

        measure("deployments_from_refs (pure)", pure)
        measure("generate-deployments (ls-remote+write)", generate)
        measure("generate-deployments (+ load soa-configs)", generate_with_config)
        measure("mark-for-deployment (tag + regenerate)", mark)

        def new_process(verb: str, *args: str) -> None:
            """One run of a paasport verb in a new process, interpreter start-up included."""
            files = ["--soa-dir", str(soa)]
            no_system_config = {**os.environ, "PAASPORT_CONFIG": str(root / "none.yaml")}
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "paasport", verb, *args, *files],
                check=True,
                capture_output=True,
                env=no_system_config,
                timeout=120,
            )
            label = f"paasport {verb} (new process)"
            print(f"{label:<44} {(time.perf_counter() - start) * 1000:7.1f} ms")

        new_process("generate-deployments", "-s", "bench")
        new_process("mark-for-deployment", "-s", "bench", "-l", "group3.main", "-c", shas[5][:10])


if __name__ == "__main__":
    main()
