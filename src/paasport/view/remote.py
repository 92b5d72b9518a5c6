"""Reading other clusters through their paasport HTTP API (``clusters.<name>.api_url``).

The API serves the same JSON documents as the CLI's ``--json`` (docs/views.md), so a remote
cluster's answer is rendered exactly like a local reading. Every request has a short deadline:
a cluster that does not answer becomes one line ("cluster prod: API at http://... did not
answer in 2 s") and the others still print. ``ask_clusters`` asks several in parallel.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from paasport.config.system import ClusterConfig, SystemConfig
from paasport.errors import (
    ApiUnavailable,
    NotFoundError,
    PaasportError,
    PermanentError,
    UsageError,
)

DEFAULT_TIMEOUT_SECONDS = 2.0
TOKEN_ENV = "PAASPORT_API_TOKEN"


def token_from_env(explicit: str | None = None) -> str | None:
    """``--token``, else ``$PAASPORT_API_TOKEN``, else none."""
    return explicit or os.environ.get(TOKEN_ENV) or None


def _error_message(body: object) -> str:
    """The API's ``{"error": {"message": ...}}``, or what the body says."""
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, Mapping) and err.get("message"):
            field = f" ({err['field']})" if err.get("field") else ""
            return f"{err['message']}{field}"
        if isinstance(body.get("detail"), str):
            return str(body["detail"])
    return ""


def answer_error(where: str, status: int, body: object, text: str) -> PaasportError:
    """The PaasportError for a non-2xx answer of ``where``. Pure."""
    message = _error_message(body) or text.strip()[:200] or "no message"
    line = f"{where} answered {status}: {message}"
    if status == 404:
        return NotFoundError(line)
    if status in (400, 422):
        return UsageError(line)
    if status in (502, 503, 504):
        return ApiUnavailable(line, delay=1.0)
    return PermanentError(line)


def request_json(
    cluster: ClusterConfig,
    method: str,
    path: str,
    *,
    params: Mapping[str, str | Sequence[str]] | None = None,
    body: Mapping[str, Any] | None = None,
    token: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> Any:
    """One call to ``cluster``'s API; the decoded JSON answer. Raises ApiUnavailable when it
    does not answer within ``timeout`` (connect and read alike), UsageError when the cluster
    names no ``api_url``, and the mapped PaasportError for an error answer."""
    import httpx

    if not cluster.api_url:
        raise UsageError(
            f"cluster {cluster.name} has no api_url in paasport.yaml "
            f"(clusters.{cluster.name}.api_url); it can only be read on one of its hosts"
        )
    where = f"cluster {cluster.name}: API at {cluster.api_url}"
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with httpx.Client(base_url=cluster.api_url, timeout=timeout, headers=headers) as client:
            response = client.request(method, path, params=dict(params or {}), json=body)
    except httpx.TimeoutException as err:
        raise ApiUnavailable(f"{where} did not answer in {timeout:g} s") from err
    except httpx.HTTPError as err:  # refused, DNS, reset mid-answer
        raise ApiUnavailable(f"{where} did not answer: {err or type(err).__name__}") from err
    try:
        decoded: Any = response.json()
    except ValueError:
        decoded = None
    if response.status_code >= 400:
        raise answer_error(where, response.status_code, decoded, response.text)
    if decoded is None:
        raise ApiUnavailable(f"{where} answered {response.status_code} without JSON")
    return decoded


@dataclass(frozen=True)
class ClusterAnswer:
    """One cluster's reading: its JSON document, or the one line saying why there is none."""

    cluster: str
    data: Any = None
    error: str = ""

    @property
    def answered(self) -> bool:
        return not self.error


def ask_clusters(
    clusters: Sequence[str], read: Callable[[str], Any], *, deadline: float | None = None
) -> tuple[ClusterAnswer, ...]:
    """``read(cluster)`` for every cluster in parallel, in the order given; a PaasportError
    becomes that cluster's one line. ``read`` bounds its own calls (``request_json``);
    ``deadline`` (seconds) bounds the whole wait all the same."""

    def one(cluster: str) -> ClusterAnswer:
        try:
            return ClusterAnswer(cluster, read(cluster))
        except PaasportError as err:
            text = str(err)
            prefix = f"cluster {cluster}"
            return ClusterAnswer(
                cluster, None, text if text.startswith(prefix) else f"{prefix}: {text}"
            )

    if len(clusters) <= 1:
        return tuple(one(c) for c in clusters)
    pool = ThreadPoolExecutor(max_workers=min(8, len(clusters)), thread_name_prefix="cluster")
    try:
        futures = [pool.submit(one, c) for c in clusters]
        out = []
        for cluster, future in zip(clusters, futures, strict=True):
            try:
                out.append(future.result(timeout=deadline))
            except TimeoutError:
                out.append(
                    ClusterAnswer(cluster, None, f"cluster {cluster}: no answer in {deadline:g} s")
                )
        return tuple(out)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def read_across(
    system: SystemConfig,
    clusters: Sequence[str],
    local: Callable[[], Any],
    path: str,
    params: Mapping[str, str | Sequence[str]] | None = None,
    *,
    token: str | None = None,
) -> tuple[ClusterAnswer, ...]:
    """The same reading of every cluster, in parallel: ``local()`` for this host's, ``GET
    path`` of the others' APIs (2 s each); a cluster that cannot be read is its one line."""

    def read(name: str) -> Any:
        if name == system.local_cluster:
            return local()
        return request_json(system.clusters[name], "GET", path, params=params, token=token)

    return ask_clusters(clusters, read, deadline=DEFAULT_TIMEOUT_SECONDS + 8)
