"""paasport's HTTP API (FastAPI): the read model as JSON under /v1/, the deploy verbs, tokens.

``create_app`` (``api.app``) builds it; ``api.server`` serves it with uvicorn in a thread for
``paasport api`` and ``paasport up``. Never imports ``paasport.cli`` (docs/api.md).
"""
