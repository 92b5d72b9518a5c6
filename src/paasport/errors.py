"""The one error hierarchy of paasport; every layer raises these, the CLI and API map them.

    PaasportError                      base; ``str(err)`` is the message a person reads
    ├── UsageError                     bad flags / arguments                     (CLI exit 2)
    ├── ConfigError                    bad soa-configs or system config           (CLI exit 1)
    │     carries a tuple of ConfigProblem (file, line, subject, field, message)
    ├── NotFoundError                  unknown service / instance / group / commit (CLI exit 1)
    ├── PermanentError                 an operation that cannot succeed as asked   (CLI exit 1)
    │     ├── ConflictError            the present state does not allow it (nothing to roll back to)
    │     ├── GitError                 git refused or could not reach a repo
    │     ├── ImageError               build / push / missing image
    │     └── EngineError              the engine refused a request
    └── TemporaryError(delay)          retryable: the reconciler retries after ``delay`` seconds
          │     (``backoff``: longer each time in a row, or every ``delay`` for cheap probes)
          ├── EngineUnavailable        the engine did not answer
          ├── RegistryUnavailable      the discovery registry did not answer (no backoff)
          └── ApiUnavailable           another cluster's paasport API did not answer in time

Library code never calls ``sys.exit``: exit codes are decided in ``paasport.cli.main`` only,
HTTP status codes in ``paasport.api`` only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class ConfigProblem:
    """One problem in one file: rendered ``file:line: subject: field: message``."""

    file: str
    line: int
    subject: str  # instance, namespace or "" for file-level problems
    field: str  # dotted field path or ""
    message: str
    severity: str = "error"  # "error" | "warning" | "note"

    def __str__(self) -> str:
        parts = [f"{self.file}:{self.line}" if self.line else self.file] if self.file else []
        if self.subject:
            parts.append(self.subject)
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)


class PaasportError(Exception):
    """Base of every error paasport raises on purpose."""

    exit_code = 1


class UsageError(PaasportError):
    exit_code = 2


class ConfigError(PaasportError):
    def __init__(self, problems: tuple[ConfigProblem, ...] | list[ConfigProblem] | str) -> None:
        if isinstance(problems, str):
            problems = (ConfigProblem(file="", line=0, subject="", field="", message=problems),)
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class NotFoundError(PaasportError):
    pass


class PermanentError(PaasportError):
    pass


class ConflictError(PermanentError):
    pass


class GitError(PermanentError):
    pass


class ImageError(PermanentError):
    pass


class EngineError(PermanentError):
    pass


class TemporaryError(PaasportError):
    """Retry after ``delay`` seconds; with ``backoff`` the reconciler waits longer after each
    failure in a row (an overloaded engine), without it every ``delay`` (a cheap probe)."""

    backoff = True

    def __init__(self, message: str, delay: float = 1.0, backoff: bool | None = None) -> None:
        super().__init__(message)
        self.delay = delay
        if backoff is not None:
            self.backoff = backoff


class EngineUnavailable(TemporaryError):
    pass


class RegistryUnavailable(TemporaryError):
    """Asking the registry again is cheap, and a bounce waiting on it should resume as soon as
    it answers: retried every ``delay`` (1 s), never backed off."""

    backoff = False


class ApiUnavailable(TemporaryError):
    """A cluster's HTTP API did not answer within its deadline (or refused the connection)."""

    backoff = False


def os_reason(err: BaseException) -> str:
    """The innermost OS-level reason in an SDK exception chain ("Connection refused"), for
    adapters' one-line messages: SDK texts nest three exceptions and their reprs."""
    reason = str(err)
    seen: BaseException | None = err
    while seen is not None:
        for candidate in (seen, *getattr(seen, "args", ())):
            if isinstance(candidate, OSError) and candidate.strerror:
                reason = candidate.strerror
        seen = seen.__cause__ or seen.__context__
    return reason
