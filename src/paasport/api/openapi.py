"""``python -m paasport.api.openapi``: the API's OpenAPI document, as kept in docs/openapi.json.

The document does not depend on a cluster's settings; a unit test checks the copy is current.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from paasport.api.app import create_app
from paasport.config.system import ClusterConfig, SystemConfig


def openapi_text() -> str:
    """The OpenAPI document of ``create_app``, as sorted, indented JSON."""
    with tempfile.TemporaryDirectory() as empty:
        system = SystemConfig(
            clusters={"local": ClusterConfig("local")},
            local_cluster="local",
            soa_dir=Path(empty),
            state_dir=Path(empty),
        )
        return json.dumps(create_app(system).openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(openapi_text())
