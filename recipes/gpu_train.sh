#!/usr/bin/env bash
# One GPU lease, one command: train the GPU leg of the default model within its time budget
# and leave the weights and logs in $OUT (default ./gpu_out). Run from the repository root
# on the GPU machine, with the training pack (gagnet pack) at $PACK. Wheels for packages the
# machine lacks may travel in $PACK/wheels. Extra arguments are config overrides, e.g.
#   bash recipes/gpu_train.sh max_minutes=8 batch_size=32
set -uo pipefail
PACK=${PACK:-local/gpu_pack}
OUT=${OUT:-gpu_out}
CONFIG=${CONFIG:-src/gagnet/configs/default-model-gpu.yaml}
RUN=$(python3 - "$CONFIG" <<'PY'
import sys, yaml
print(yaml.safe_load(open(sys.argv[1]))["out_dir"])
PY
)
for arg in "$@"; do [[ $arg == out_dir=* ]] && RUN=${arg#out_dir=}; done
mkdir -p "$OUT"
if compgen -G "$PACK/wheels/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/gagnet-site "$PACK"/wheels/*.whl || exit 1
  export PYTHONPATH=/tmp/gagnet-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)" | tee -a "$OUT/gpu.txt"
start=$(date +%s)
python3 -m gagnet train --config "$CONFIG" "$@" 2>&1 | tr '\r' '\n' | grep -v '^Epoch .*it/s' > "$OUT/train.txt"
status=${PIPESTATUS[0]}
echo "training exited with $status after $(( $(date +%s) - start )) s" | tee -a "$OUT/gpu.txt"
tail -n 30 "$OUT/train.txt"
# the weights as fp16 (the shippable size) and fp32 in two halves (each file that comes back is capped)
python3 - "$RUN" "$OUT" <<'PY'
import sys, torch
from pathlib import Path
run, out = Path(sys.argv[1]), Path(sys.argv[2])
ckpt = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
sd = ckpt["state_dict"]
torch.save({"config": ckpt["config"], "state_dict": {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}},
           out / "model_fp16.pt")
keys = list(sd)
for i, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2 :])):
    torch.save({"config": ckpt["config"], "state_dict": {k: sd[k] for k in part}}, out / f"model_fp32_part{i}.pt")
print("exported", len(keys), "tensors")
PY
tar -czf "$OUT/logs.tgz" -C "$RUN" train_log.csv val_log.csv config.yaml 2>/dev/null
ls -la "$OUT"
exit "$status"
