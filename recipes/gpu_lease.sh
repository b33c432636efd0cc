#!/usr/bin/env bash
# One GPU lease, one command per step. See docs/training.md, "A GPU lease, one command".
#
#   bash recipes/gpu_lease.sh prepare        # here, on the CPU machine: pack, wheels, one tar, size check
#   bash recipes/gpu_lease.sh cache          # on the device, only when prepare asks for it: a call 0 that
#                                            # carries the compile cache alone (too large beside the pack)
#   bash recipes/gpu_lease.sh train          # on the device (first call): train, stop after CALL1_MINUTES
#   bash recipes/gpu_lease.sh resume         # on the device (second call, machine still warm): the rest
#
# `prepare` prints the exact device calls. Both device steps leave in $OUT the fp16 weights of
# the best validation (model_best_fp16.pt) and of the last step (model_fp16.pt, when they differ),
# the logs (logs.tgz) and a throughput line (at the end of gpu.txt); with ema_decay, also the raw
# last weights (model_raw_fp16.pt); and a compile cache that was not carried, when it fits. Extra arguments are
# config overrides (e.g. batch_size=96).
# Environment: INIT (weights to continue from; default the best so far on validation, causal-v2-wip),
# CALL1_MINUTES / CALL2_MINUTES (fit time of the two calls, 8.0 and 1.5 by default: call 1 then
# ends with about 40 s to spare in its 600 s; their sum in call 1 is the cosine's budget, which the
# checkpoint keeps: a longer call 2 runs its extra minutes at the floor rate),
# SPEECH / NOISE (extra sources for the pack, space-separated). A compile cache in
# local/lease/compile_cache.xz (returned by an earlier lease) travels in the tar and spares the
# cold compile on the same GPU kind and torch; a call that compiled anything returns a new one.
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-}
shift || true
LEASE=local/lease
INIT=${INIT:-causal-v2-wip}
CALL1_MINUTES=${CALL1_MINUTES:-8.0}
CALL2_MINUTES=${CALL2_MINUTES:-1.5}
BUDGET=$(python3 -c "print($CALL1_MINUTES + $CALL2_MINUTES)")
LIMIT_BYTES=$((64 * 1024 * 1024))

prepare() {
  mkdir -p "$LEASE"
  grep -qxF "/local/" .gitignore || { echo "local/ must be ignored by git" >&2; exit 1; }
  local speech=(../shared/data/speech) noise=(../shared/data/noise)
  # local extras only on request: with two shipped models in the tree they no longer fit (docs/training.md (e))
  if [ "${PACK_LOCAL:-0}" = 1 ]; then
    [ -f local/apt_speech/targets_en_es_fr.txt ] && speech+=(local/apt_speech/targets_en_es_fr.txt)
    [ -d local/noise_gen ] && noise+=(local/noise_gen)
  elif [ -d local/noise_gen/babble ]; then
    # only the babble kinds of the generated noise (11 min, 2.4 MB of Opus): the device makes the
    # other kinds itself but has no non-target speech to make babble from
    noise+=(local/noise_gen/babble local/noise_gen/babble_machine)
  fi
  # recorded sound events from Debian packages (recipes/apt_audio.sh; 7 min, about 1.5 MB of Opus)
  for d in local/apt_audio/noise/events_*; do [ -d "$d" ] && noise+=("$d"); done
  # shellcheck disable=SC2206
  speech+=(${SPEECH:-}); noise+=(${NOISE:-})
  # rebuilt when its sources (pack.json) change, and from before packs kept the held-out split's
  # keys (docs/training.md (h))
  if ! python3 - "$LEASE/pack/pack.json" "${#speech[@]}" "${speech[@]}" "${noise[@]}" <<'PY'
import json, sys
path, n, *sources = sys.argv[1:]
try:
    pack = json.load(open(path))
except OSError:
    sys.exit(1)
same = [pack["speech"]["sources"], pack["noise"]["sources"]] == [sources[:int(n)], sources[int(n):]]
sys.exit(0 if pack.get("keeps_split_keys") and same else 1)
PY
  then
    rm -rf "$LEASE/pack"
    # Opus level 0.93 (default 0.9): the ../shared/data tar at 0.9 left 67.35 MB with the tree, over the 67.1
    gagnet pack "$LEASE/pack" --speech "${speech[@]}" --noise "${noise[@]}" --rirs 80 --level "${PACK_LEVEL:-0.93}" || exit 1
  fi
  if [ ! -f "$LEASE/wheels/.done" ]; then  # what the device's image lacks (Python 3.12 there)
    mkdir -p "$LEASE/wheels"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d "$LEASE/wheels" \
      soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 soxr==1.1.0 pystoi==0.4.1 || exit 1
    touch "$LEASE/wheels/.done"
  fi
  mkdir -p "$LEASE/carry"
  tar -cf "$LEASE/carry/lease.tar" -C "$LEASE" pack wheels
  local tree tar_bytes kind=""
  tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 -r du -cb 2>/dev/null | tail -1 | cut -f1)
  tar_bytes=$(stat -c %s "$LEASE/carry/lease.tar")
  echo "working tree $((tree / 1000000)) MB + lease.tar $((tar_bytes / 1000000)) MB (limit $((LIMIT_BYTES / 1000000)) MB)"
  if [ $((tree + tar_bytes)) -gt "$LIMIT_BYTES" ]; then
    echo "too large for one device call: drop sources from the pack (SPEECH/NOISE) or raise its Opus level" >&2
    exit 1
  fi
  # the compile cache an earlier lease returned (docs/training.md (e)): spares the cold compile
  # on the same GPU kind and torch; in the tar when it fits, else carried alone by a call 0
  rm -rf "$LEASE/cache_carry"
  local call0=""
  if [ -f "$LEASE/compile_cache.xz" ]; then
    local cache_bytes device
    cache_bytes=$(stat -c %s "$LEASE/compile_cache.xz")
    device=$(cache_desc)
    tar -rf "$LEASE/carry/lease.tar" -C "$LEASE" compile_cache.xz
    if [ $((tree + $(stat -c %s "$LEASE/carry/lease.tar"))) -le "$LIMIT_BYTES" ]; then
      echo "compile cache $((cache_bytes / 1000000)) MB added, made on $device"
    else
      tar -cf "$LEASE/carry/lease.tar" -C "$LEASE" pack wheels
      if [ $((tree + cache_bytes)) -le "$LIMIT_BYTES" ]; then
        mkdir -p "$LEASE/cache_carry"
        cp "$LEASE/compile_cache.xz" "$LEASE/cache_carry/"
        echo "compile cache $((cache_bytes / 1000000)) MB, made on $device: too large beside the pack, so a call 0 carries it alone"
        call0="  0. command: bash recipes/gpu_lease.sh cache     carry [\"$LEASE/cache_carry\"]     timeout_s: 120
     then call 1 at once: the machine stays warm only 30 s, and a fresh one would not have the cache
"
      else
        device=""
        echo "compile cache ($((cache_bytes / 1000000)) MB) left out: even alone it does not fit beside the tree (the first step then compiles, about 4 min)" >&2
      fi
    fi
    case "$device" in
      *H200*) kind=', kind "nvidia-h200" (the GPU the compile cache was made on)' ;;
      *H100*) kind=' and no kind (a first call tries nvidia-h100-x1, the GPU the compile cache was made on; naming it rules out the fallback to an H200)' ;;
    esac
  fi
  cat <<EOF
ready. Device calls (run$kind):
$call0  1. carry ["$LEASE/carry"]     command: bash recipes/gpu_lease.sh train     timeout_s: 600
  2. carry ["$LEASE/carry"], at once, while the machine is warm, if status's budget_left_s allows (about 60 s of start-up
     and validation plus the training): command: CALL2_MINUTES=M bash recipes/gpu_lease.sh resume
     with M = (budget_left_s - 100) / 60 rounded down to a tenth (default 1.5), timeout_s: budget_left_s - 10
  after: a returned compile_cache.xz (or its .part files, joined with cat) goes to $LEASE/compile_cache.xz
EOF
}

# the carried or written compile cache: its sha256 (nothing when absent), and where it was made
cache_sum() { [ -f "$LEASE/compile_cache.xz" ] && sha256sum < "$LEASE/compile_cache.xz" | cut -d' ' -f1; }

cache_desc() {
  python3 -c "import sys; from gagnet.compile_cache import read_header; h = read_header(sys.argv[1]); \
print(f'{h[\"device\"]} (torch {h[\"torch\"]}, {h[\"artifacts\"]} artifacts)')" "$LEASE/compile_cache.xz"
}

device_setup() {
  OUT=${OUT:-gpu_out}
  mkdir -p "$OUT"
  if [ ! -d "$LEASE/pack" ]; then
    tar -xf "$LEASE/carry/lease.tar" -C "$LEASE" || exit 1
    cache_sum > "$LEASE/.cache_sent"  # the carried compile cache needs no return
  fi
  if ! python3 -c "import soundfile, soxr, pystoi" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/gagnet-site "$LEASE"/wheels/*.whl || exit 1
  fi
  export PYTHONPATH=$PWD/src:/tmp/gagnet-site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
  export TORCHINDUCTOR_CACHE_DIR=$PWD/$LEASE/inductor-cache  # kept between calls on a warm machine
  if [ ! -f "$LEASE/noise_gen/corpus.json" ]; then  # written last: a half-made corpus is redone
    # generated noise made here instead of carried (deterministic); its babble comes in the pack
    python3 -m gagnet make-noise "$LEASE/noise_gen" --minutes 30 --kinds colored,hum,clicks,machine,hum_clicks \
      --overwrite >/dev/null || exit 1
  fi
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU"; } \
    | tee "$OUT/gpu.txt"
  python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)" \
    | tee -a "$OUT/gpu.txt"
}

device_train() {  # $1: train or resume, $2: minutes of this call; the rest are overrides
  local mode=$1 minutes=$2
  shift 2
  local resume=()
  [ -f "$LEASE/run/checkpoints/last.ckpt" ] && resume=(--resume)
  local start=$SECONDS
  python3 -m gagnet train --config lease "${resume[@]}" init_weights="$INIT" max_minutes="$BUDGET" \
    stop_after_minutes="$minutes" out_dir="$LEASE/run" "data.noise=[$LEASE/pack/noise,$LEASE/noise_gen]" \
    compile_cache="$LEASE/compile_cache.xz" "$@" 2>&1 | tr '\r' '\n' | grep -v 'it/s\]' >> "$OUT/train.txt"
  local status=${PIPESTATUS[0]}
  echo "training exited with $status after $((SECONDS - start)) s" | tee -a "$OUT/gpu.txt"
  grep -F "compile cache" "$OUT/train.txt" | tee -a "$OUT/gpu.txt"
  tail -n 20 "$OUT/train.txt"
  python3 - "$LEASE/run" "$OUT" <<'PY'
import sys, torch, yaml
from pathlib import Path
from gagnet.callbacks import log_throughput
from gagnet.pretrained import load_model
run, out = Path(sys.argv[1]), Path(sys.argv[2])
def save_half(config, state, path):
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    torch.save({"config": config, "state_dict": half}, path)
best, ckpt = (torch.load(run / f"{n}.pt", map_location="cpu", weights_only=True) for n in ("model_best", "model"))
save_half(best["config"], best["state_dict"], out / "model_best_fp16.pt")
if best["state_dict"].keys() == ckpt["state_dict"].keys() and all(
        torch.equal(v, best["state_dict"][k]) for k, v in ckpt["state_dict"].items()):
    line = "model_fp16.pt: the last weights are the best (model_best_fp16.pt), not returned twice"
    print(line)
    (out / "gpu.txt").open("a").write(line + "\n")
else:
    save_half(ckpt["config"], ckpt["state_dict"], out / "model_fp16.pt")
cfg = yaml.safe_load((run / "config.yaml").read_text())
last = run / "checkpoints" / "last.ckpt"
if cfg.get("ema_decay") and last.exists():  # the two above are the weight average's: the raw ones too
    save_half(ckpt["config"], load_model(last).net.state_dict(), out / "model_raw_fp16.pt")
audio = cfg["batch_size"] * cfg["data"]["segment_seconds"]
t = log_throughput(run / "train_log.csv", audio)
line = "no steps logged" if t is None else (
    f"steps {t['first_step']}..{t['to_step']}: {t['audio_s_per_s']:.0f} audio-s/s end to end after the first logged "
    f"row (steps {t['from_step']}..{t['to_step']}, {t['seconds']:.0f} s, validation included); "
    f"{t['to_step'] * audio / 3600:.1f} h of mixtures in the run; skipped steps {t['skipped']}")
print(line)
(out / "gpu.txt").open("a").write(line + "\n")
PY
  tar -czf "$OUT/logs.tgz" -C "$LEASE/run" train_log.csv val_log.csv config.yaml \
    $(cd "$LEASE/run" && ls -d val_scores.csv ranks 2>/dev/null)
  return_cache "$mode"
  return "$status"
}

send_cache() {  # the compile cache into $OUT when it fits the return (gagnet.compile_cache)
  python3 -c "import sys; from gagnet.compile_cache import return_compile_cache as r; \
sys.exit(0 if r(sys.argv[1], sys.argv[2]) else 1)" "$LEASE/compile_cache.xz" "$OUT"
}

# A compile cache not yet returned (written in this call, or in an earlier one that its time limit
# cut short) goes back after the weights and logs, whole or in 15 MiB parts, when it fits the
# return (8 files, 64 MiB together). In call 1 it takes the place of model_fp16.pt when it must:
# those latest weights stay in the run folder, and call 2 returns its own.
return_cache() {  # $1: train or resume
  local sum bytes
  sum=$(cache_sum)
  { [ -n "$sum" ] && [ "$sum" != "$(cat "$LEASE/.cache_sent" 2>/dev/null)" ]; } || return 0
  bytes=$(stat -c %s "$LEASE/compile_cache.xz")
  echo "compile cache to return: made on $(cache_desc), $((bytes / 1000)) kB" | tee -a "$OUT/gpu.txt"
  if send_cache || { [ "$1" = train ] && [ -f "$OUT/model_fp16.pt" ] && rm "$OUT/model_fp16.pt" \
      && echo "model_fp16.pt left on the device to make room for the compile cache" | tee -a "$OUT/gpu.txt" \
      && send_cache; }; then
    echo "$sum" > "$LEASE/.cache_sent"
  else
    echo "compile cache not returned by this call: it does not fit beside the weights and logs" | tee -a "$OUT/gpu.txt"
  fi
}

case "$MODE" in
  prepare) prepare ;;
  cache)  # call 0, when prepare says so: the compile cache alone, left where call 1 finds it
    cp "$LEASE/cache_carry/compile_cache.xz" "$LEASE/compile_cache.xz" || exit 1
    export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
    echo "compile cache in place for call 1: made on $(cache_desc)" ;;
  train) device_setup; device_train train "$CALL1_MINUTES" "$@" ;;
  resume) device_setup; device_train resume "$CALL2_MINUTES" "$@" ;;
  *) echo "usage: bash recipes/gpu_lease.sh prepare | cache | train | resume [key=value ...]" >&2; exit 2 ;;
esac
