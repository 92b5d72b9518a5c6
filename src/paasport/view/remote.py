"""Reading other clusters through their paasport HTTP API (``clusters.<name>.api_url``).

The API serves the same JSON documents as the CLI's ``--json`` (docs/views.md), so a remote
cluster's answer is rendered exactly like a local reading. Every request has a short deadline:
a cluster that does not answer becomes one line ("cluster prod: API at http://... did not
answer in 2 s") and the others still print. ``ask_clusters`` asks several in parallel.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

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

T = TypeVar("T")


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


def cluster_line(cluster: str, err: PaasportError) -> str:
    """``err`` as the one line about ``cluster`` ("cluster prod: ..."). Pure."""
    text = str(err)
    return text if text.startswith(f"cluster {cluster}") else f"cluster {cluster}: {text}"


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
            return ClusterAnswer(cluster, None, cluster_line(cluster, err))

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


# ---- following: Server-Sent Events from other clusters, merged with this host's -----------

STREAM_READ_TIMEOUT_SECONDS = 40.0  # the API sends a comment every 15 s; silence past this is a cut
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0)  # between attempts when a stream is lost


def sse_messages(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """The ``(event, data)`` of each message in an SSE body's lines; comments and messages
    without data are skipped (the SSE spec's parsing, the fields paasport sends). Pure."""
    event, data = "message", list[str]()
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)


def follow_sse(
    cluster: ClusterConfig,
    path: str,
    params: Callable[[], Mapping[str, str | Sequence[str]]],
    *,
    token: str | None,
    stop: threading.Event,
    note: Callable[[str], None],
    read_timeout: float = STREAM_READ_TIMEOUT_SECONDS,
) -> Iterator[tuple[str, Any]]:
    """``(event, decoded data)`` of ``cluster``'s stream at ``path`` until ``stop``. A stream
    that cannot be opened, is cut or goes silent past ``read_timeout`` is opened again (with
    ``params()`` asked anew, so the caller can resume), after 1, 2, 5, then every 10 s;
    ``note`` hears once that it was lost and once that it is back. An error answer other
    than 502/503/504 (401, 404, ...) is raised: trying again would not change it."""
    import httpx

    if not cluster.api_url:
        raise UsageError(f"cluster {cluster.name} has no api_url in paasport.yaml")
    where = f"cluster {cluster.name}: API at {cluster.api_url}"
    headers = {"Accept": "text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    timeout = httpx.Timeout(DEFAULT_TIMEOUT_SECONDS, read=read_timeout)
    failures = 0
    while not stop.is_set():
        try:
            with (
                httpx.Client(base_url=cluster.api_url, timeout=timeout, headers=headers) as client,
                client.stream("GET", path, params=dict(params())) as response,
            ):
                if response.status_code >= 400:
                    response.read()
                    try:
                        body: object = response.json()
                    except ValueError:
                        body = None
                    raise answer_error(where, response.status_code, body, response.text)
                if failures:
                    note(f"{where}: stream back")
                failures = 0
                for event, data in sse_messages(response.iter_lines()):
                    if stop.is_set():
                        return
                    try:
                        yield event, json.loads(data)
                    except ValueError:
                        continue
                why = "the stream ended"
        except ApiUnavailable as err:  # 502/503/504: the cluster's engine or API is down
            why = str(err).removeprefix(f"{where} ")
        except httpx.TimeoutException:
            why = f"no word in {read_timeout:g} s"
        except httpx.HTTPError as err:
            why = str(err) or type(err).__name__
        if not failures:
            note(f"{where}: {why}; trying again")
        delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
        failures += 1
        if stop.wait(delay):
            return


def merge_follows(
    sources: Mapping[str, Callable[[threading.Event], Iterator[T]]],
    stop: threading.Event,
    *,
    failed: Callable[[str, PaasportError], None],
) -> Iterator[tuple[str, T]]:
    """``(name, item)`` from every source as they come, each followed in its own thread,
    until ``stop`` or every source has ended; a source that raises a PaasportError is
    reported through ``failed`` and the others go on."""
    found: queue.Queue[tuple[str, T] | str] = queue.Queue(1000)

    def pump(name: str, follow: Callable[[threading.Event], Iterator[T]]) -> None:
        try:
            for item in follow(stop):
                while not stop.is_set():
                    try:
                        found.put((name, item), timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except PaasportError as err:
            failed(name, err)
        finally:
            found.put(name)  # this source is done

    for name, follow in sources.items():
        threading.Thread(
            target=pump, args=(name, follow), name=f"follow-{name}", daemon=True
        ).start()
    running = len(sources)
    try:
        while running and not stop.is_set():
            try:
                got = found.get(timeout=0.5)
            except queue.Empty:
                continue
            if isinstance(got, str):
                running -= 1
            else:
                yield got
    finally:
        stop.set()
