#!/usr/bin/env bash
# The Omniglot walkthrough with curl: meta-train 5-way 1-shot MAML on some alphabets, then
# adapt to five characters of an alphabet it never saw (Greek), one PNG drawing each, and
# classify other drawings of them. Needs `fewshot serve` started with FEWSHOT_OMNIGLOT_DIR
# pointing at the archives, curl, jq, unzip and base64.
set -euo pipefail
API=${API:-http://127.0.0.1:8000}
ARCHIVE=${ARCHIVE:-../shared/datasets/omniglot/images_background_small1.zip}
WORK=$(mktemp -d)
unzip -q "$ARCHIVE" '*/Greek/character0[1-5]/*' -d "$WORK"
GREEK=$(dirname "$(find "$WORK" -type d -name character01)")

JOB=$(curl -s -X POST "$API/v1/jobs" -H 'content-type: application/json' -d '{
  "algorithm": "maml", "dataset": "omniglot",
  "config": {"split_by": "alphabet", "steps": 300, "meta_batch_size": 4, "k_query": 5, "channels": 32, "adapt_steps": 3, "eval_episodes": 100}
}' | jq -r .id)
echo "job $JOB"
until [ "$(curl -s "$API/v1/jobs/$JOB" | jq -r .status)" = succeeded ]; do
  curl -s "$API/v1/jobs/$JOB" | jq -c '{status, progress}'; sleep 5
done
MODEL=$(curl -s "$API/v1/jobs/$JOB" | jq -r .model_id)
curl -s "$API/v1/models/$MODEL" | jq -c '{id, algorithm, ways, metrics}'

png() { printf '"%s"' "$(base64 -w0 "$1")"; }
first() { ls "$GREEK/$1"/*.png | head -1; }
second() { ls "$GREEK/$1"/*.png | sed -n 2p; }
LABELS=(alpha beta gamma delta epsilon)
SUPPORT="" QUERY=""
for i in 1 2 3 4 5; do
  SUPPORT+="${SUPPORT:+,}$(png "$(first character0$i)")"
  QUERY+="${QUERY:+,}$(png "$(second character0$i)")"
done
TASK=$(curl -s -X POST "$API/v1/models/$MODEL/tasks" -H 'content-type: application/json' \
  -d "{\"support\": {\"inputs\": [$SUPPORT], \"labels\": [\"alpha\",\"beta\",\"gamma\",\"delta\",\"epsilon\"]}}" | jq -r .id)
echo "task $TASK"
curl -s -X POST "$API/v1/tasks/$TASK/predictions" -H 'content-type: application/json' \
  -d "{\"inputs\": [$QUERY]}" | jq -c '{predictions}'
echo "truth: ${LABELS[*]}"
rm -rf "$WORK"
