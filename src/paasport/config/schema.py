"""JSON Schemas of every file kind, derived from the ``config.fields`` tables (never hand-kept).

Called by ``paasport schema KIND``; the output works with yaml-language-server
(``# yaml-language-server: $schema=...``) and any draft-07 validator.
"""

from __future__ import annotations

from paasport.config import fields as F
from paasport.config.spec import Obj

KINDS = ("service", "deploy", "instances", "adhoc", "tron", "smartstack", "monitoring", "system")

_DRAFT = "http://json-schema.org/draft-07/schema#"


def _named_map(item: Obj, title: str) -> dict[str, object]:
    return {
        "type": "object",
        "description": title,
        "patternProperties": {
            "^_": {"description": "a template (use with YAML anchors); never run"},
            f"^(?:{F.INSTANCE_NAME})$": item.schema(),
        },
        "additionalProperties": False,
    }


def json_schema(kind: str) -> dict[str, object]:
    """The JSON Schema of one file kind (see KINDS); KeyError for an unknown kind."""
    builders = {
        "service": lambda: F.SERVICE.schema(),
        "deploy": lambda: F.DEPLOY.schema(),
        "instances": lambda: _named_map(
            F.INSTANCE,
            "instances-<cluster>.yaml (also kubernetes-/marathon-/eks-<cluster>.yaml): "
            "instance name -> instance",
        ),
        "adhoc": lambda: _named_map(
            F.ADHOC, "adhoc-<cluster>.yaml: adhoc instance name -> one-off instance"
        ),
        "tron": lambda: _named_map(F.JOB, "tron-<cluster>.yaml: job name -> scheduled job"),
        "smartstack": lambda: _named_map(
            F.NAMESPACE, "smartstack.yaml: namespace name -> namespace"
        ),
        "monitoring": lambda: F.MONITORING.schema(),
        "system": lambda: F.SYSTEM.schema(),
    }
    schema = builders[kind]()
    return {"$schema": _DRAFT, "title": f"paasport {kind} file", **schema}
