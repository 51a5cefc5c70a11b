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

cat <<NEXT

Next, from $(pwd) (the commands are in .venv/bin):
  source .venv/bin/activate
  finsight serve --model $M                                  # the model over HTTP on 127.0.0.1:8000
  mlflow ui --backend-store-uri sqlite:///$W/mlflow.db       # the training runs, on 127.0.0.1:5000
  finsight analyze examples/filings.jsonl --model $M --mode document --out $W/filings.scored.jsonl
NEXT
