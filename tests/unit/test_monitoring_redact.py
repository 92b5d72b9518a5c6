"""Case table for monitoring.redact: tests/cases/monitoring/redact.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from paasport.monitoring.redact import redact

CASES = yaml.safe_load(
    (Path(__file__).parent.parent / "cases" / "monitoring" / "redact.yaml").read_text()
)


@pytest.mark.parametrize("case", CASES, ids=lambda c: str(c["name"]))
def test_redact(case: dict[str, Any]) -> None:
    assert redact(case["line"], case.get("env") or {}) == case["expect"]
