#!/usr/bin/env bash
# The offline demo behind `make demo`: the main job on the bundled sample data.
set -euo pipefail
cd "$(dirname "$0")/.."
export FINSIGHT_CONFIG=configs/quickstart.yaml
finsight config show
