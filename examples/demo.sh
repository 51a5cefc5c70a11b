#!/usr/bin/env bash
# The offline demo behind `make demo`: the whole pipeline on the bundled sample data.
# A tiny BERT is built from the training split (configs/quickstart.yaml), so no download.
set -euo pipefail
cd "$(dirname "$0")/.."
export FINSIGHT_CONFIG=configs/quickstart.yaml HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=true
W=finsight-work/demo
rm -rf "$W"   # the demo starts clean so it can be run again

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "prep: clean, dedupe and split examples/headlines.csv"
finsight prep examples/headlines.csv --out "$W/data" --keep-column id --keep-column ticker --keep-column date

step "train: fine-tune the tiny model (Lightning, tracked in $W/mlflow.db)"
finsight train --data "$W/data" --out "$W/run"

step "evaluate: the test split"
finsight evaluate "$W/run/model" --data "$W/data" --split test --out "$W/eval"

step "export: ONNX int8, validated against PyTorch"
finsight export "$W/run/model" --format onnx --quantize int8 --out "$W/export-onnx-int8"

step "analyze: score every headline with the int8 model, sentiment index per ticker"
finsight analyze examples/headlines.csv --model "$W/export-onnx-int8" --id-column id \
    --keep-columns ticker --keep-columns date --group-by ticker --out "$W/headlines.scored.csv"

step "analyze --mode document: multi-sentence filings, aggregated per document"
finsight analyze examples/filings.jsonl --model "$W/export-onnx-int8" --id-column doc_id \
    --keep-columns ticker --mode document --out "$W/filings.scored.jsonl"

printf '\nOutputs under %s/:\n' "$W"
ls "$W"

# The commands as this shell can run them: `make demo` puts .venv/bin on PATH, the user's may not.
bin() { local path; path=$(command -v "$1"); case "$path" in "$PWD"/*) echo "${path#"$PWD"/}" ;; *) echo "$1" ;; esac; }
step "next steps"
cat <<EOF
Browse the demo's MLflow runs (then open http://127.0.0.1:5000):
  $(bin mlflow) ui --backend-store-uri sqlite:///$W/mlflow.db
Score a file of your own with the demo's int8 model (a toy: use a real model for real work):
  $(bin finsight) analyze examples/headlines.csv --model $W/export-onnx-int8 --out scored.csv
EOF
