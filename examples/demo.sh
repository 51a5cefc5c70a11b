#!/usr/bin/env bash
# The offline demo behind `make demo`: the whole lifecycle on the bundled sample data, as one
# resumable `finsight pipeline run` (configs/quickstart.yaml: a tiny BERT built from the
# training split, so no download). A second run skips every stage that has not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=true
W=finsight-work
M=$W/runs/demo/model

finsight --config configs/quickstart.yaml pipeline run

# The commands as this shell can run them: `make demo` puts .venv/bin on PATH, the user's may not.
bin() { local path; path=$(command -v "$1"); case "$path" in "$PWD"/*) echo "${path#"$PWD"/}" ;; *) echo "$1" ;; esac; }
cat <<NEXT

Next steps (the demo model is a toy built offline: use a real model for real work):
  $(bin finsight) serve --model $M                           # the model over HTTP: http://127.0.0.1:8000
  $(bin mlflow) ui --backend-store-uri sqlite:///$W/mlflow.db   # the runs and registry: http://127.0.0.1:5000
  $(bin finsight) analyze examples/filings.jsonl --model $M --mode document --out $W/filings.scored.jsonl
NEXT
