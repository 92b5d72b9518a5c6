"""Redaction of log lines quoted in events and status (pure): secrets become ``***``.

The reconciler (reconcile.step, a crash's last log lines) and status (view.observe, the
why line) call ``redact`` with the instance's env before a line is stored or shown.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MASK = "***"
MIN_ENV_VALUE = 4  # shorter env values ("1", "on", "dev") would mask half of every line

_SECRET = r"[A-Za-z0-9_.-]*(?:PASSWORD|SECRET|TOKEN|KEY)[A-Za-z0-9_.-]*"
# "key": "value" (JSON), key=value / key="value" (env, URLs, logfmt), key: value (YAML, headers)
_JSON = re.compile(rf'("{_SECRET}"\s*:\s*)"(?:[^"\\]|\\.)*"', re.IGNORECASE)
_ASSIGN = re.compile(rf"""(\b{_SECRET}\s*=\s*)("[^"]*"|'[^']*'|[^\s,;&]+)""", re.IGNORECASE)
_COLON = re.compile(rf"""(\b{_SECRET}\s*:\s+)("[^"]*"|'[^']*'|[^\s,;&]+)""", re.IGNORECASE)


def redact(line: str, env: Mapping[str, str] = {}) -> str:
    """``line`` with the values of secret-looking keys and of ``env``'s values masked."""
    line = _JSON.sub(lambda m: f'{m.group(1)}"{MASK}"', line)
    line = _ASSIGN.sub(lambda m: m.group(1) + MASK, line)
    line = _COLON.sub(lambda m: m.group(1) + MASK, line)
    values = sorted({v for v in env.values() if len(v) >= MIN_ENV_VALUE}, key=len, reverse=True)
    for value in values:
        line = line.replace(value, MASK)
    return line


def redact_all(lines: list[str], env: Mapping[str, str] = {}) -> list[str]:
    return [redact(line, env) for line in lines]
