#!/usr/bin/env bash
# The accelerator benchmarks of benchmarks/README.md in one prepared run (one GPU or TPU host, a short lease):
#
#   OUT=/tmp/ssl_jax_bench bash benchmarks/gpu.sh            # from the repository root; BATCH=256 STEPS=20 by default
#   PARTS="compare double" PROFILE=1 OUT=... bash benchmarks/gpu.sh     # some parts; profile the first
#
# Parts (PARTS, default all):
#   compare  MAE ViT-B/16, bf16: the PyTorch reference (eager, torch.autocast bf16, fused attention) against ssl_jax
#            with cuDNN attention, same batch, same invocation (compare_torch.py). With PROFILE=1 both are profiled:
#            $OUT/trace.json.gz and $OUT/step.hlo.txt.gz (read them with benchmarks/profile_summary.py) and
#            $OUT/torch_profile.txt.
#   einsum   ssl_jax with its own XLA attention (`attention.einsum_attention`, the default off cuDNN) instead of cuDNN.
#   xla      ssl_jax with jax's XLA attention (the cuDNN kernel's gain).
#   double   ssl_jax at twice the batch (does the chip fill at BATCH?).
#   compiled The PyTorch reference under torch.compile.
#   peak     The measured bf16 matmul peak of the device (the MFU above uses the datasheet's dense peak).
#   attention The attention implementations alone at the MAE shapes (benchmarks/attention.py, bf16).
#   methods  The train step of every other method family's full-scale config at BATCH, bf16 as configured (METHODS:
#            SimCLR, BYOL, Barlow Twins, VICReg, SimSiam ResNet-50, SwAV ResNet-50 with 2 x 224 + 6 x 96 crops,
#            RotNet ResNet-50 (each image in 4 rotations), jigsaw ResNet-50 (9 tiles), colorization ViT-B/16 at
#            176 px, the context encoder ViT-B/16 at 128 px with its discriminator, MoCo v3 ViT-B/16, DINO
#            ViT-S/16 with 2 x 224 + 10 x 96 crops, I-JEPA ViT-H/14 with its 12-block predictor (BATCH a multiple
#            of its mask group, 128), data2vec ViT-B/16 with its EMA teacher, BEiT ViT-B/16, the ViT-B/16 VQ tokenizer, DINOv2
#            ViT-L/16 with 2 x 224 + 8 x 96 crops at BATCH / 4, the official per-GPU batch of 64), one part each.
#   resnet   SimCLR ResNet-50 at BATCH, bf16, against the PyTorch reference (torchvision's ResNet-50 with the same
#            head, loss, LARS and online probe) in the same invocation (compare_torch.py --method=simclr).
#   language GPT-2 small (TEXT_BATCH windows of 1024 tokens) and BERT-base (TEXT_BATCH x 4 windows of 128), bf16,
#            each against the Hugging Face PyTorch reference in the same invocation (compare_torch.py --method).
#   speech   wav2vec 2.0 BASE at its per-GPU batch (SPEECH_BATCH crops of 14.6 s: 6 x 233,333 samples, fairseq's 1.4M),
#            bf16, against Hugging Face's Wav2Vec2ForPreTraining in the same invocation (compare_torch.py
#            --method=wav2vec2).
#   flags    ssl_jax as in "compare", once per XLA flag in GPU_FLAGS (each alone, added to XLA_FLAGS): where the
#            H200 profile's time outside the matmuls went (LayerNorm and bias-gradient reductions, GELU) — cuDNN's
#            LayerNorm kernels, cuBLASLt, cuBLAS instead of Triton GEMMs. An unknown flag fails its part alone.
# Each part has its own time limit and a failure does not stop the others. Everything goes to $OUT/all.log and one
# JSON object per part to $OUT/results.jsonl; a summary table is printed last.
set -u
OUT=${OUT:-/tmp/ssl_jax_bench}
BATCH=${BATCH:-256}
STEPS=${STEPS:-20}
PYTHON=${PYTHON:-python3}
LIMIT=${LIMIT:-150}
PARTS=${PARTS:-compare einsum xla double compiled peak attention methods resnet language speech flags}
TEXT_BATCH=${TEXT_BATCH:-32}
SPEECH_BATCH=${SPEECH_BATCH:-6}
METHODS=${METHODS:-simclr_resnet50 byol_resnet50 barlow_twins_resnet50 vicreg_resnet50 simsiam_resnet50 swav_resnet50
         rotation_resnet50 jigsaw_resnet50 colorization_vit_b16 inpainting_vit_b16
         mocov3_vit_b dino_vit_s16 ijepa_vit_h14 data2vec_vit_b beit_vit_b vqvae_tokenizer dinov2_vit_l16
         clip_vit_b16 siglip_vit_b16}
DEFAULT_GPU_FLAGS="--xla_gpu_enable_cudnn_layer_norm=true --xla_gpu_enable_cublaslt=true"
DEFAULT_GPU_FLAGS+=" --xla_gpu_enable_triton_gemm=false"
GPU_FLAGS=${GPU_FLAGS:-$DEFAULT_GPU_FLAGS}
PROFILE=${PROFILE:-0}
ATTENTION=${ATTENTION:-cudnn}   # ssl_jax's attention in "compare" and "double" (xla to try this script on a CPU)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"

part() {  # part KEY NAME COMMAND...: runs COMMAND under the time limit if KEY is in PARTS, keeps its last JSON line
  local key=$1 name=$2 log="$OUT/part.log"
  shift 2
  [[ " $PARTS " == *" $key "* ]] || return 0
  echo "=== $name: $*" | tee -a "$OUT/all.log"
  local start=$SECONDS
  timeout "$LIMIT" "$@" > "$log" 2>&1
  local rc=$?
  cat "$log" >> "$OUT/all.log"
  grep -v '^{' "$log" | tail -n 12
  local json
  json=$(grep '^{' "$log" | tail -n 1)
  echo "{\"part\": \"$name\", \"rc\": $rc, \"wall_s\": $((SECONDS - start)), \"result\": ${json:-null}}" >> "$RESULTS"
  echo "--- $name: rc=$rc in $((SECONDS - start)) s"
  rm -f "$log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>/dev/null || true
  "$PYTHON" -c 'import jax, flax, optax; print("jax", jax.__version__, "flax", flax.__version__, "optax",
optax.__version__, jax.devices())'; } 2>&1 | tee -a "$OUT/all.log"

B=$BATCH
PROFILE_DIR=$(mktemp -d)
profile_flag=()
[[ $PROFILE == 1 ]] && profile_flag=("--profile_dir=$PROFILE_DIR")
part compare "mae_b${B}_${ATTENTION}_vs_torch" "$PYTHON" benchmarks/compare_torch.py --batch_size="$B" \
  --dtype=bfloat16 --attention_impl="$ATTENTION" --steps="$STEPS" "${profile_flag[@]}"
if [[ $PROFILE == 1 ]]; then  # $OUT keeps flat files: the trace, the HLO it names, the PyTorch kernel table
  trace=$(find "$PROFILE_DIR" -name '*.trace.json.gz' | head -n 1)
  [[ -n $trace ]] && cp "$trace" "$OUT/trace.json.gz"
  [[ -f $PROFILE_DIR/step.hlo.txt ]] && gzip -c "$PROFILE_DIR"/step.hlo.txt > "$OUT"/step.hlo.txt.gz
  [[ -f $PROFILE_DIR/torch_profile.txt ]] && cp "$PROFILE_DIR"/torch_profile.txt "$OUT"/
fi
rm -rf "$PROFILE_DIR"
part einsum "mae_b${B}_einsum_attention" "$PYTHON" benchmarks/train_step.py --config=configs/mae_vit_b.py \
  --config.batch_size="$B" --config.model.dtype=bfloat16 --config.model.attention_impl=einsum --steps="$STEPS"
part xla "mae_b${B}_xla_attention" "$PYTHON" benchmarks/train_step.py --config=configs/mae_vit_b.py \
  --config.batch_size="$B" --config.model.dtype=bfloat16 --config.model.attention_impl=xla --steps="$STEPS"
part double "mae_b$((2 * B))_${ATTENTION}" "$PYTHON" benchmarks/train_step.py --config=configs/mae_vit_b.py \
  --config.batch_size=$((2 * B)) --config.model.dtype=bfloat16 --config.model.attention_impl="$ATTENTION" \
  --steps="$STEPS"
part compiled "torch_b${B}_compiled" "$PYTHON" benchmarks/torch_reference/mae.py --batch_size="$B" \
  --dtype=bfloat16 --steps="$STEPS" --compile
part peak "matmul_peak_bf16" "$PYTHON" -c 'import json, sys, jax, jax.numpy as jnp
sys.path.insert(0, "benchmarks")
import harness
d = jax.devices()[0]
print(json.dumps(dict(device_kind=d.device_kind, bf16_matmul_flops_per_s=harness.measure_matmul_peak(jnp.bfloat16, d))))'
part attention "attention_b${B}_bf16" "$PYTHON" benchmarks/attention.py --batch_size="$B" --dtype=bfloat16 \
  --impls=einsum,xla,cudnn
for method in $METHODS; do
  b=$B
  [ "$method" = dinov2_vit_l16 ] && b=$((B / 4))    # ViT-L, 2 + 8 crops: the official per-GPU batch at BATCH=256
  part methods "${method}_b${b}" "$PYTHON" benchmarks/train_step.py --config="configs/$method.py" \
    --config.batch_size="$b" --steps="$STEPS"
done
part resnet "simclr_resnet50_b${B}_vs_torch" "$PYTHON" benchmarks/compare_torch.py --method=simclr \
  --batch_size="$B" --dtype=bfloat16 --steps="$STEPS"
part language "gpt2_small_b${TEXT_BATCH}x1024_vs_torch" "$PYTHON" benchmarks/compare_torch.py --method=gpt \
  --batch_size="$TEXT_BATCH" --length=1024 --dtype=bfloat16 --steps="$STEPS"
part language "bert_base_b$((4 * TEXT_BATCH))x128_vs_torch" "$PYTHON" benchmarks/compare_torch.py --method=bert \
  --batch_size=$((4 * TEXT_BATCH)) --length=128 --dtype=bfloat16 --steps="$STEPS"
part speech "wav2vec2_base_b${SPEECH_BATCH}x14.6s_vs_torch" "$PYTHON" benchmarks/compare_torch.py --method=wav2vec2 \
  --batch_size="$SPEECH_BATCH" --seconds=14.5833 --dtype=bfloat16 --steps="$STEPS"
for flag in $GPU_FLAGS; do
  name=${flag#--xla_gpu_}
  part flags "mae_b${B}_${ATTENTION}_${name%%=*}=${flag#*=}" env XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }$flag" "$PYTHON" \
    benchmarks/train_step.py --config=configs/mae_vit_b.py --config.batch_size="$B" --config.model.dtype=bfloat16 \
    --config.model.attention_impl="$ATTENTION" --steps="$STEPS"
done

"$PYTHON" - "$RESULTS" <<'EOF'
import json, sys
print(f"\n{'part':32s} {'rc':>3s} {'step ms':>9s} {'1-by-1':>8s} {'ex/s':>8s} {'MFU':>6s} {'compile s':>9s} {'mem GiB':>8s}  other")
for line in open(sys.argv[1]):
  p = json.loads(line)
  r = p["result"] or {}
  other = ""
  if "ratio" in r:
    t = r["torch"]
    other = (f"torch {t['step_time_s'] * 1e3:.1f} ms (1-by-1 {t.get('step_time_blocking_s', 0) * 1e3:.1f}), "
             f"ratio ssl_jax/torch {r['ratio']:.3f}")
    r = r["ssl_jax"]
  elif "bf16_matmul_flops_per_s" in r:
    other = f"{r['device_kind']}: bf16 matmul {r['bf16_matmul_flops_per_s'] / 1e12:.0f} TFLOP/s"
  elif "rows" in r:
    other = "; ".join(f"{x['shape']} {x['impl']} {x['forward_backward_s'] * 1e3:.2f} ms" for x in r["rows"])
    r = {}
  elif "compiled" in r:
    other = f"torch {r['torch']} compiled={r['compiled']} {r['dtype']}"
  ms = f"{r['step_time_s'] * 1e3:.1f}" if "step_time_s" in r else "-"
  ex = f"{r['examples_per_s']:.0f}" if "examples_per_s" in r else "-"
  one = f"{r['step_time_blocking_s'] * 1e3:.1f}" if "step_time_blocking_s" in r else "-"
  mfu = f"{r['mfu']:.3f}" if "mfu" in r else "-"
  comp = f"{r['compile_time_s']:.1f}" if "compile_time_s" in r else "-"
  mem = f"{r['peak_memory_bytes'] / 2**30:.1f}" if "peak_memory_bytes" in r else "-"
  print(f"{p['part']:32s} {p['rc']:3d} {ms:>9s} {one:>8s} {ex:>8s} {mfu:>6s} {comp:>9s} {mem:>8s}  {other}")
EOF
