#!/usr/bin/env bash
# The whole issuelab pipeline on local data, no network, about a minute on 2 CPU cores:
# import -> split -> train -> evaluate -> crossval -> predict.
# Data: NLBSE'24 issue report classification (github.com/nlbse2024/issue-report-classification,
# data/issues_{train,test}.csv), read from $ISSUELAB_DATA/nlbse24/.
set -euo pipefail

DATA=${ISSUELAB_DATA:-../shared/data}/nlbse24
REPO=${REPO:-facebook/react}
CONFIG=${CONFIG:-examples/nlbse24/issuelab.toml}
WORK=${WORK:-work/demo}

if [ ! -f "$DATA/issues_train.csv" ]; then
  echo "error: $DATA/issues_train.csv not found; set ISSUELAB_DATA to the folder holding nlbse24/" >&2
  exit 2
fi
mkdir -p "$WORK"

echo "== 1. import: $REPO from both NLBSE'24 CSVs (600 issues) into the dataset JSONL"
issuelab import --config "$CONFIG" "$DATA/issues_train.csv" "$DATA/issues_test.csv" \
  --repo "$REPO" --out "$WORK/issues.jsonl"

echo "== 2. split: seeded, stratified 80/10/10"
issuelab split --config "$CONFIG" "$WORK/issues.jsonl" --out "$WORK/splits" --force

echo "== 3. train: tfidf engine, thresholds tuned on eval"
issuelab train --config "$CONFIG" --train "$WORK/splits/train.jsonl" --eval "$WORK/splits/eval.jsonl" \
  --out "$WORK/runs/tfidf" --force

echo "== 4. evaluate on the held-out test split (the seed's metrics)"
issuelab evaluate --config "$CONFIG" --model "$WORK/runs/tfidf" --data "$WORK/splits/test.jsonl" \
  --out "$WORK/test-predictions.jsonl" --json "$WORK/test-metrics.json"

echo "== 5. crossval: 5 folds over all 600 issues, a tighter estimate than 60 test issues"
issuelab crossval --config "$CONFIG" --data "$WORK/issues.jsonl" --folds 5 --json "$WORK/crossval-metrics.json"

echo "== 6. predict: the first held-out test issue, as a JSON object on stdin"
head -n 1 "$WORK/splits/test.jsonl" | python -c 'import json, sys; i = json.load(sys.stdin); print("title:", i["title"][:100]); print("gold: ", ", ".join(i["labels"]))'
head -n 1 "$WORK/splits/test.jsonl" | issuelab predict --model "$WORK/runs/tfidf"
