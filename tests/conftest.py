"""Test-wide isolation: no test reads this machine's /etc/paasport or the caller's PAASPORT_* env.

`make up` writes /etc/paasport/paasport.yaml; a test that wants a system config passes --config
or sets PAASPORT_CONFIG itself.
"""

from __future__ import annotations

import os
import tempfile

for _var in ("PAASPORT_SOA_DIR", "PAASPORT_STATE_DIR"):
    os.environ.pop(_var, None)
os.environ["PAASPORT_CONFIG"] = os.path.join(tempfile.gettempdir(), "paasport-tests-no-config.yaml")
