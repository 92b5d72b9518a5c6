"""A cache of every service's smartstack.yaml facts (namespaces and their lines), on disk.

Called by ``config.tree.load_tree`` when it loads only some services: the tree-wide rules
(registrations, unique proxy ports) need every namespace, not a parse of every other service's
file. Entries are keyed by the file's (mtime_ns, size, inode, device); a cache that cannot be
read or written is simply not used, so loading never fails because of it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from paasport.types import Namespace

FileKey = tuple[int, int, int, int]
VERSION = 1
# a file changed twice within the filesystem's timestamp tick keeps its key: such recent
# entries are not stored, so the next load parses the file again (git's "racy" rule)
_RACY_NS = 2_000_000_000

_DEFAULTS: dict[str, object] = {
    f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
    for f in dataclasses.fields(Namespace)
    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
}


def file_key(st: os.stat_result) -> FileKey:
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


def cache_path(soa_dir: Path, state_dir: Path) -> Path:
    """The state dir when it exists (never created for this), else beside the soa-configs dir."""
    soa = os.path.abspath(soa_dir)
    tag = f"{zlib.crc32(soa.encode()):08x}"  # one file per tree; hashlib costs a fresh CLI 4 ms
    base = state_dir if state_dir.is_dir() else Path(soa).parent
    return base / ".paasport-cache" / f"smartstack-{tag}.json"


class SmartstackCache:
    """Facts per service: ``get`` a hit for an unchanged file, ``put`` a parse, ``save`` once."""

    def __init__(self, path: Path, soa_dir: Path) -> None:
        self.path = path
        self.soa_dir = os.path.abspath(soa_dir)
        self.entries: dict[str, Any] = {}
        self.dirty = False
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError, RecursionError):
            return
        # another tree whose path hashes alike starts from nothing (and then owns the file)
        if (
            isinstance(doc, dict)
            and doc.get("version") == VERSION
            and doc.get("soa_dir") == self.soa_dir
        ):
            entries = doc.get("services")
            if isinstance(entries, dict):
                self.entries = entries

    def get(
        self, service: str, key: FileKey
    ) -> tuple[dict[str, Namespace], dict[str, int], bool] | None:
        entry = self.entries.get(service)
        if not isinstance(entry, dict) or entry.get("key") != list(key):
            return None
        try:
            namespaces = {
                f"{service}.{name}": _namespace(service, name, values)
                for name, values in entry["namespaces"].items()
            }
            lines = {f"{service}.{name}": int(line) for name, line in entry["lines"].items()}
            return namespaces, lines, bool(entry["ok"])
        except (KeyError, TypeError, ValueError, AttributeError):
            return None  # an entry another version wrote, or a damaged file: parse again

    def put(
        self,
        service: str,
        key: FileKey,
        namespaces: Mapping[str, Namespace],
        lines: Mapping[str, int],
        ok: bool,
    ) -> None:
        if key[0] > time.time_ns() - _RACY_NS:
            self.entries.pop(service, None)
            return
        self.entries[service] = {
            "key": list(key),
            "ok": ok,
            "namespaces": {ns.name: _compact(ns) for ns in namespaces.values()},
            "lines": {full.split(".", 1)[1]: line for full, line in lines.items()},
        }
        self.dirty = True

    def save(self) -> None:
        """Write atomically when something changed; any failure leaves the cache unused."""
        if not self.dirty:
            return
        import tempfile  # only when writing: a warm `validate -s` never needs it

        doc = {"version": VERSION, "soa_dir": self.soa_dir, "services": self.entries}
        data = json.dumps(doc, separators=(",", ":"))
        try:
            self.path.parent.mkdir(mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".smartstack.", dir=self.path.parent)
        except OSError:
            return
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(data)
            os.replace(tmp, self.path)
        except OSError:
            Path(tmp).unlink(missing_ok=True)
        self.dirty = False


_FIELDS = frozenset(f.name for f in dataclasses.fields(Namespace))


def _namespace(service: str, name: str, values: Mapping[str, object]) -> Namespace:
    """Namespace(service, name, **values) at a third of the cost (thousands per load): the
    frozen __init__ sets each field through object.__setattr__; the values are our own."""
    if not _FIELDS.issuperset(values) or "proxy_port" not in values:
        raise KeyError("unexpected fields")
    ns = object.__new__(Namespace)
    state = ns.__dict__
    state.update(_DEFAULTS)
    state["extra_healthcheck_headers"] = {}
    state.update(values)
    state["service"] = service
    state["name"] = name
    return ns


def _compact(ns: Namespace) -> dict[str, object]:
    values = dataclasses.asdict(ns)
    del values["service"], values["name"]
    return {k: v for k, v in values.items() if k == "proxy_port" or _DEFAULTS.get(k) != v}
