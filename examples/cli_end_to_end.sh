#!/usr/bin/env bash
# The `atgan` command line end to end, on a small slice: train a target classifier, attack it
# with AT-GAN (untargeted and targeted), reuse a saved fit, and evaluate.
#
#     bash examples/cli_end_to_end.sh               # quick settings (a few minutes on a CPU)
#     TRAIN_SIZE=60000 EPOCHS=6 STEPS=500 N=10000 bash examples/cli_end_to_end.sh   # full size
#
# G_orig and the oracle are the shipped Fashion-MNIST checkpoints unless GENERATOR / ORACLE
# name other files. Everything is written to a temporary folder, removed at the end unless
# KEEP=1. ATGAN names the command (default: `atgan` on PATH).
set -euo pipefail

ATGAN=${ATGAN:-atgan}
ARCH=${ARCH:-A}                  # target architecture: A-D (Tramèr et al.)
TRAIN_SIZE=${TRAIN_SIZE:-2000}   # training images for the target classifier
EPOCHS=${EPOCHS:-1}
STEPS=${STEPS:-20}               # AT-GAN fit steps (the default of the CLI is 500)
N=${N:-200}                      # examples per setting
DEVICE=${DEVICE:-auto}
generator=()                     # empty: the shipped generator
if [[ -n ${GENERATOR:-} ]]; then generator=(--generator "$GENERATOR"); fi
oracle=()
if [[ -n ${ORACLE:-} ]]; then oracle=(--oracle "$ORACLE"); fi

work=$(mktemp -d "${TMPDIR:-/tmp}/atgan-e2e.XXXXXX")
if [[ ${KEEP:-0} == 1 ]]; then
    echo "outputs kept in $work"
else
    trap 'rm -rf "$work"' EXIT
fi

echo "== 1. train a target classifier (Model $ARCH) on $TRAIN_SIZE images"
"$ATGAN" train-classifier --arch "$ARCH" --epochs "$EPOCHS" --train-size "$TRAIN_SIZE" \
    --out "$work/target.safetensors" --device "$DEVICE" --no-progress

echo "== 2. untargeted attack: fit G_attack ($STEPS steps), generate $N examples"
"$ATGAN" attack ${generator[@]+"${generator[@]}"} --model "$work/target.safetensors" --n "$N" --steps "$STEPS" \
    --runs-dir "$work/runs" --device "$DEVICE" --no-progress
untargeted=$(ls -d "$work"/runs/*-attack | tail -n 1)
test -f "$untargeted/adversarial.safetensors"
test -f "$untargeted/g_attack.safetensors"
test -f "$untargeted/options.json"

echo "== 3. generate again from the saved fit (no fitting)"
"$ATGAN" attack ${generator[@]+"${generator[@]}"} --model "$work/target.safetensors" --n "$N" \
    --fit "$untargeted/g_attack.safetensors" --format pt --runs-dir "$work/runs" --device "$DEVICE"
test -f "$(ls -d "$work"/runs/*-attack | tail -n 1)/adversarial.pt"

echo "== 4. targeted attack: every image should be classified as class 0"
"$ATGAN" attack ${generator[@]+"${generator[@]}"} --model "$work/target.safetensors" --target 0 --n "$N" \
    --steps "$STEPS" --runs-dir "$work/runs" --device "$DEVICE" --no-progress

echo "== 5. evaluate: untargeted (reusing the fit) and targets 0 and 3, judged by the oracle"
"$ATGAN" evaluate ${generator[@]+"${generator[@]}"} ${oracle[@]+"${oracle[@]}"} --model "$work/target.safetensors" --n "$N" --steps "$STEPS" \
    --targets 0,3 --fit "$untargeted/g_attack.safetensors" --runs-dir "$work/runs" --device "$DEVICE" --no-progress
evaluation=$(ls -d "$work"/runs/*-evaluate | tail -n 1)
test -f "$evaluation/report.json"
test -f "$evaluation/grid.png"

echo "== done: $(ls "$work/runs" | wc -l) run folders under $work/runs"
