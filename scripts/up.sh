#!/usr/bin/env bash
# `make up`: run paasport on the example soa-configs (called after bootstrap).
set -euo pipefail
cd "$(dirname "$0")/.."
export PAASPORT_SOA_DIR=${PAASPORT_SOA_DIR:-$(pwd)/examples/soa-configs}
.venv/bin/paasport validate
.venv/bin/paasport list
