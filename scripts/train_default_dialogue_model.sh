#!/usr/bin/env bash
# Reproduces the shipped default dialogue world model (dialogue/default/).
# ShareGPT V3 (offline package), train half A of the hashed split, the first 2,000 dialogues
# (a subset, to bound CPU time), frozen all-MiniLM-L6-v2, one torch thread, 300 steps of 16 windows
# (about 10 minutes on a busy 2-core CPU once the turn embeddings are cached; embedding them first
# takes about 25 minutes). The next-user head is residual on the previous user turn and response
# (model.next_user_skip) and its InfoNCE negatives come from other windows only
# (model.loss.nce_other_windows), as in the dev retrieval evaluation.
# Usage: scripts/train_default_dialogue_model.sh [RUN_DIR]   (then copies RUN_DIR/model to dialogue/default)
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR="${1:-runs/default_dialogue}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/arrcoc train --data sharegpt --output "$RUN_DIR" --max-steps 300 \
  train_split=train_A max_dialogues=2000 max_turns=16 max_dev_dialogues=400 \
  batch_size=16 lr=1e-3 save_every=100 log_every=20 threads=1 seed=0 bpe_vocab=4096 \
  model.next_user_skip=true model.loss.nce_other_windows=true
mkdir -p dialogue/default
cp "$RUN_DIR"/model/config.json "$RUN_DIR"/model/model.safetensors "$RUN_DIR"/model/tokenizer.json dialogue/default/
cp "$RUN_DIR"/final_metrics.json dialogue/default/train_metrics.json
