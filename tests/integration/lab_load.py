"""Steady HTTP load inside one lab host, as a script (tests start it with ``Lab.spawn``).

``python lab_load.py PORT OUT STOP [PATH]``: GETs ``http://127.0.0.1:PORT/PATH`` one after
another (each with a 2 s deadline, a new connection each, like a client that does not keep
connections) until the file STOP exists, then writes ``{"ok", "failed", "failures",
"bodies"}`` as JSON to OUT. Runs inside the host's network namespace, which the test process
cannot enter itself. Ends by itself after 600 s at the latest.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from collections import Counter
from pathlib import Path


def main(port: int, out: Path, stop: Path, path: str = "/") -> None:
    ok = 0
    failures: list[str] = []
    bodies: Counter[str] = Counter()
    deadline = time.monotonic() + 600
    while not stop.exists() and time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace").strip()
            if resp.status == 200:
                ok += 1
                bodies[body[:40]] += 1
            else:
                failures.append(f"{time.time():.3f} HTTP {resp.status}: {body[:80]!r}")
        except (OSError, http.client.HTTPException) as err:
            failures.append(f"{time.time():.3f} {err!r}")
        finally:
            conn.close()
        time.sleep(0.002)
    result = {"ok": ok, "failed": len(failures), "failures": failures[:50], "bodies": bodies}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.rename(out)


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), *sys.argv[4:5])
