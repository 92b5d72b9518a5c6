"""The git adapter: the only place paasport runs ``git`` (ls-remote, resolve, tag, archive).

Used by ``deploy.workflow`` and ``deploy.images``; a repo is a local path (tagged in place) or
any URL git can reach (objects fetched into a temporary bare repo, tags pushed, never cloned).
Every failure becomes a GitError or NotFoundError naming the repo.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Self

from paasport.errors import GitError, NotFoundError, UsageError

GIT_TIMEOUT_SECONDS = 60.0
# The transports paasport supports; set for every git call whatever the caller's environment
# says, so a git_url like ``ext::sh -c ...`` can never run a command.
ALLOWED_PROTOCOLS = "file:git:http:https:ssh"
_HELPER_URL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+.-]*::")
_FULL_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_SHORT_SHA_RE = re.compile(r"^[0-9a-fA-F]{4,40}$")
_SCP_LIKE_RE = re.compile(r"^[^/]+:")


@dataclass(frozen=True)
class Tagger:
    """Who made an annotated tag and when (POSIX seconds)."""

    name: str
    email: str
    time: float


def check_git_url(url: str) -> str | None:
    """Why ``url`` cannot be handed to git, or None when it can (pure)."""
    if url.startswith("-"):
        return f"git url {url!r} must not start with '-'"
    if _HELPER_URL_RE.match(url):
        return f"git url {url!r}: <transport>::<address> URLs (such as ext::) are not supported"
    return None


def is_local_url(url: str) -> bool:
    """A plain path (not ``scheme://`` and not scp-like ``host:path``)."""
    return "://" not in url and not _SCP_LIKE_RE.match(url)


def resolve_git_url(git_url: str, base_dir: Path) -> str:
    """A relative local path resolves against ``base_dir`` (the service's soa-configs folder)."""
    if is_local_url(git_url):
        path = Path(git_url).expanduser()
        return str(path if path.is_absolute() else (base_dir / path).resolve())
    return git_url


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "GIT_TERMINAL_PROMPT": "0",
            "LC_ALL": "C",
            "GIT_ASKPASS": "/bin/false",
            "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS,
        }
    )
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return env


def _run(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    stdout: IO[bytes] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = GIT_TIMEOUT_SECONDS,
) -> subprocess.CompletedProcess[bytes]:
    cmd = ["git", *(["-C", str(cwd)] if cwd else []), *args]
    try:
        return subprocess.run(
            cmd,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else _env(),
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as err:
        raise GitError("git is not installed (no `git` on PATH)") from err
    except subprocess.TimeoutExpired as err:
        raise GitError(f"`git {args[0]}` did not finish within {timeout:.0f} s") from err


def _why(proc: subprocess.CompletedProcess[bytes]) -> str:
    lines = [ln.strip() for ln in proc.stderr.decode(errors="replace").splitlines() if ln.strip()]
    fatal = [ln for ln in lines if ln.startswith(("fatal:", "error:", "remote:"))]
    return (fatal or lines or [f"exit status {proc.returncode}"])[-1]


class GitRepo:
    """One service repo. Use as a context manager: it may own a temporary bare repo."""

    def __init__(self, url: str) -> None:
        why = check_git_url(url)
        if why is not None:
            raise UsageError(why)
        self.url = url
        self.local_path: Path | None = Path(url) if is_local_url(url) else None
        self._scratch: Path | None = None
        self._refs: dict[str, str] | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    # -- reading -------------------------------------------------------------------------

    def ls_remote(self, *, tags_only: bool = True) -> dict[str, str]:
        """ref -> sha as ``git ls-remote`` lists them (annotated tags also as ``ref^{}``)."""
        if self.local_path is not None and not self.local_path.exists():
            raise GitError(f"git repo {self.url} does not exist")
        proc = _run(["ls-remote", *(["--tags"] if tags_only else []), "--", self.url])
        if proc.returncode != 0:
            raise GitError(f"cannot read refs of git repo {self.url}: {_why(proc)}")
        refs: dict[str, str] = {}
        for line in proc.stdout.decode(errors="replace").splitlines():
            sha, _, ref = line.partition("\t")
            if ref:
                refs[ref] = sha
        if tags_only:
            self._refs = refs
        return refs

    def tag_refs(self) -> dict[str, str]:
        """The tags, read once per GitRepo (call ``ls_remote`` again to refresh)."""
        return self._refs if self._refs is not None else self.ls_remote()

    def resolve_commit(self, commit: str) -> str:
        """The full sha of ``commit`` (sha, short sha, branch or tag); NotFoundError if none."""
        if not commit or commit.startswith("-") or any(c.isspace() for c in commit):
            raise UsageError(f"{commit!r} is not a commit")
        if self.local_path is not None:
            self.tag_refs()  # a clear error when the path is not a repo (and read once)
            return self._rev_parse(self.local_path, commit)
        refs = self.ls_remote(tags_only=False)
        for ref in (f"refs/heads/{commit}", f"refs/tags/{commit}"):
            if ref in refs:
                return refs.get(f"{ref}^{{}}", refs[ref])
        lowered = commit.lower()
        if _FULL_SHA_RE.match(lowered):
            self._fetch(lowered)
            return lowered
        if _SHORT_SHA_RE.match(commit):
            matches = {sha for sha in refs.values() if sha.startswith(lowered)}
            if len(matches) == 1:
                return matches.pop()
        scratch = self._scratch_repo()
        proc = _run(
            ["fetch", "-q", "--no-tags", "--", self.url, "+refs/heads/*:refs/heads/*"], cwd=scratch
        )
        if proc.returncode != 0:
            raise GitError(f"cannot fetch from git repo {self.url}: {_why(proc)}")
        return self._rev_parse(scratch, commit)

    def _rev_parse(self, where: Path, commit: str) -> str:
        proc = _run(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{commit}^{{commit}}"],
            cwd=where,
        )
        if proc.returncode != 0:
            raise NotFoundError(f"commit {commit!r} does not exist in git repo {self.url}")
        return proc.stdout.decode().strip()

    def taggers(self) -> dict[str, Tagger]:
        """``refs/tags/...`` -> tagger of each annotated ``paasta-`` tag (local repos only)."""
        if self.local_path is None:
            return {}
        fmt = "%(refname)%09%(taggername)%09%(taggeremail)%09%(taggerdate:unix)"
        proc = _run(["for-each-ref", f"--format={fmt}", "refs/tags/paasta-*"], cwd=self.local_path)
        if proc.returncode != 0:
            raise GitError(f"cannot read tags of git repo {self.url}: {_why(proc)}")
        out: dict[str, Tagger] = {}
        for line in proc.stdout.decode(errors="replace").splitlines():
            ref, name, email, when = [*line.split("\t"), "", "", ""][:4]
            if name and when.isdigit():
                out[ref] = Tagger(name=name, email=email.strip("<>"), time=float(when))
        return out

    def read_file(self, sha: str, path: str) -> bytes | None:
        """The content of ``path`` at ``sha``, or None when it is not there."""
        where = self._objects_for(sha)
        proc = _run(["cat-file", "blob", f"{sha}:{path}"], cwd=where)
        return proc.stdout if proc.returncode == 0 else None

    def archive(self, sha: str, dest: IO[bytes]) -> None:
        """Write a tar of the tree at ``sha`` (committed files only) to ``dest``."""
        where = self._objects_for(sha)
        proc = _run(["archive", "--format=tar", sha], cwd=where, stdout=dest)
        if proc.returncode != 0:
            raise GitError(f"cannot archive {sha} of git repo {self.url}: {_why(proc)}")

    # -- writing -------------------------------------------------------------------------

    def create_tag(self, name: str, sha: str, message: str = "") -> bool:
        """Create the lightweight tag ``name`` on the commit ``sha``, as PaaSTA's own push
        writes them; False when a tag of that name exists. ``message`` is unused (who tagged
        and why go to the event log): kept so older callers still work."""
        where = self._objects_for(sha)
        if self.local_path is not None:
            proc = _run(["tag", "--no-sign", "--", name, sha], cwd=where)
            if proc.returncode != 0:
                if "already exists" in proc.stderr.decode(errors="replace"):
                    return False
                raise GitError(f"cannot create tag {name} in git repo {self.url}: {_why(proc)}")
            self._refs = None
            return True
        # A push of ``sha:refs/tags/name`` creates the ref on the remote, never overwriting one.
        push = _run(["push", "-q", "--", self.url, f"{sha}:refs/tags/{name}"], cwd=where)
        if push.returncode != 0:
            if "already exists" in push.stderr.decode(errors="replace"):
                return False
            raise GitError(f"cannot push tag {name} to git repo {self.url}: {_why(push)}")
        self._refs = None
        return True

    # -- objects ---------------------------------------------------------------------------

    def _objects_for(self, sha: str) -> Path:
        """A repo that holds ``sha``: the local repo itself, or the scratch repo after a fetch."""
        if self.local_path is not None:
            return self.local_path
        self._fetch(sha)
        assert self._scratch is not None
        return self._scratch

    def _scratch_repo(self) -> Path:
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="paasport-git-"))
            proc = _run(["init", "-q", "--bare", str(self._scratch)])
            if proc.returncode != 0:
                raise GitError(f"cannot create a scratch git repo: {_why(proc)}")
        return self._scratch

    def _fetch(self, sha: str) -> None:
        scratch = self._scratch_repo()
        if _run(["cat-file", "-e", f"{sha}^{{commit}}"], cwd=scratch).returncode == 0:
            return
        proc = _run(["fetch", "-q", "--no-tags", "--depth", "1", "--", self.url, sha], cwd=scratch)
        if proc.returncode != 0:
            why = _why(proc)
            if "not our ref" in why or "couldn't find remote ref" in why or "no such" in why:
                raise NotFoundError(f"commit {sha} does not exist in git repo {self.url}")
            raise GitError(f"cannot fetch {sha} from git repo {self.url}: {why}")


def git_user_name() -> str | None:
    """``git config user.name`` as the caller's git sees it (None when unset or no git)."""
    try:
        proc = _run(["config", "--get", "user.name"], timeout=10.0)
    except GitError:
        return None
    name = proc.stdout.decode(errors="replace").strip()
    return name if proc.returncode == 0 and name else None


def export_revision(path: Path, ref: str, dest: Path) -> str:
    """Write the folder ``path`` (inside a git work tree) as it is at ``ref`` into ``dest``
    (committed files only); the full sha of ``ref``. UsageError when ``path`` is not in a git
    work tree, NotFoundError when ``ref`` names no commit."""
    import tarfile
    import tempfile

    proc = _run(["rev-parse", "--show-prefix"], cwd=path)
    if proc.returncode != 0:
        raise UsageError(f"{path} is not in a git work tree: --against compares git revisions")
    prefix = proc.stdout.decode().strip()
    if not ref or ref.startswith("-") or any(c.isspace() for c in ref):
        raise UsageError(f"--against: {ref!r} is not a git revision")
    found = _run(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"],
                 cwd=path)  # fmt: skip
    if found.returncode != 0:
        raise NotFoundError(f"--against: no commit {ref!r} in the git repo of {path}")
    sha = found.stdout.decode().strip()
    with tempfile.TemporaryFile() as tar:
        spec = [f"{sha}:{prefix}"] if prefix else [sha]
        done = _run(["archive", "--format=tar", *spec], cwd=path, stdout=tar)
        if done.returncode != 0:
            raise GitError(f"cannot read {path} at {ref}: {_why(done)}")
        tar.seek(0)
        with tarfile.open(fileobj=tar) as archive:
            # files and folders only, none outside dest (tarfile's filter="data" needs 3.11.4)
            safe = [
                m for m in archive.getmembers()
                if (m.isfile() or m.isdir()) and not m.name.startswith("/")
                and ".." not in Path(m.name).parts
            ]  # fmt: skip
            archive.extractall(dest, members=safe)
    return sha
