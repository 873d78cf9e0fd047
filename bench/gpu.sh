#!/usr/bin/env bash
# The GPU run, on a lent NVIDIA machine with no network, from the repository root:
#   set -o pipefail; bash bench/gpu.sh 2>&1 | tee $OUT/run.log
# with bench/build/gpu-carry carried (made here by `python bench/gpu_prepare.py`).
#
# It unpacks the trimmed llama.cpp tree, installs the carried wheels into a fresh venv, makes a
# random-weights SmolLM2-135M (Q8_0; exact shape and tokenizer, bench/random_model.py), builds mr
# with CUDA for this GPU's architecture only, with llama-bench, llama-batched-bench and
# llama-mtmd-cli in the same CMake build, runs the gpu-marked tests, then the bench's decode and
# concurrency parts at 1..64 against those tools, spec, and vision (images in: mr's engine and mr
# serve, with a random 256-token projector, against llama-mtmd-cli's encode and image decode;
# llama-server is not in mr's build), and prints the bench table. Everything lands in $OUT (at
# most 8 files come back: run.log, device.txt, build.log, pytest.txt, timings.txt,
# bench/summary.md, bench/results.jsonl).
#
# MR_GPU_REHEARSAL=1 (on a machine without a GPU): every step up to a CMake configure with CUDA,
# then it stops, exit status 3. Nothing is built, tested or measured then.
set -euo pipefail
cd "$(dirname "$0")/.."

CARRY=bench/build/gpu-carry
WHEELS=$CARRY/wheels
BUDGET_S=${MR_GPU_BUDGET_S:-540}  # the device runs one command for at most 600 s
OUT=${OUT:-bench/results/gpu-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
VENV=${MR_GPU_VENV:-/tmp/mr-gpu-venv}
MODEL=${MR_GPU_MODEL_OUT:-/tmp/mr-gpu-model/smollm2-135m-random-q8_0.gguf}
REHEARSAL=${MR_GPU_REHEARSAL:-0}
FAILED=()

# ---- phase timer: every phase's seconds go to timings.txt; a failure names its phase ----
PHASE="" PHASE_T=$SECONDS
: >"$OUT/timings.txt"
phase() {
  if [[ -n $PHASE ]]; then printf '%-12s %5d s\n' "$PHASE" $((SECONDS - PHASE_T)) >>"$OUT/timings.txt"; fi
  PHASE=$1 PHASE_T=$SECONDS
  [[ $PHASE == end ]] || echo "[gpu] ==== $PHASE (at ${SECONDS} s) ===="
}
on_exit() {
  local rc=$?
  if [[ -n ${MODEL_PID:-} ]]; then kill "$MODEL_PID" 2>/dev/null || true; fi
  if ((rc != 0)) && [[ $PHASE != end ]]; then
    printf '%-12s %5d s  FAILED\n' "$PHASE" $((SECONDS - PHASE_T)) >>"$OUT/timings.txt"
    echo "[gpu] FAILED in phase '$PHASE' (exit $rc) after ${SECONDS} s" >&2
  fi
}
trap on_exit EXIT
die() { echo "[gpu] FATAL: $*" >&2; exit 1; }

# A CUDA library the toolkit next to nvcc lacks, found elsewhere: a CUDA image may carry cuBLAS only
# as a pip wheel (nvidia/...) and the driver only as a mount. Prints nothing when the toolkit has it
# (CMake's FindCUDAToolkit then finds it alone); fails when it is nowhere.
cuda_lib_elsewhere() {
  local name=$1 root=$CUDA_ROOT f
  for f in "$root"/lib64/lib"$name".so "$root"/lib/lib"$name".so "$root"/targets/*/lib/lib"$name".so \
           "$root"/lib64/stubs/lib"$name".so "$root"/targets/*/lib/stubs/lib"$name".so; do
    [[ -e $f ]] && return 0
  done
  python3 - "$name" <<'PY'
import glob, os, subprocess, sys
name = sys.argv[1]
try:
    import nvidia  # the pip CUDA wheels' namespace package
    roots = list(nvidia.__path__)
except ImportError:
    roots = []
hits = [h for r in roots for h in sorted(glob.glob(os.path.join(r, "**", f"lib{name}.so*"), recursive=True))]
hits += sorted(glob.glob(f"/usr/local/nvidia/lib64/lib{name}.so*"))
ldconfig = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
hits += [line.split("=>")[-1].strip() for line in ldconfig.splitlines() if f"lib{name}.so" in line]
print(hits[0]) if hits else sys.exit(1)
PY
}

# ---- 1. the GPU, its architecture and the toolchain ----
phase gpu
if [[ $REHEARSAL == 1 ]]; then
  echo "[gpu] REHEARSAL (MR_GPU_REHEARSAL=1): no GPU required; stopping after the CUDA configure" >&2
  CC=${MR_GPU_ARCH:-90}
else
  command -v nvidia-smi >/dev/null || die "no nvidia-smi on PATH: this is not an NVIDIA GPU machine"
  nvidia-smi -L | grep -q '^GPU ' || die "nvidia-smi lists no GPU"
  CC=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1 | tr -d ' .')
  [[ $CC =~ ^[0-9]+$ ]] || die "could not read the GPU's compute capability (got '$CC')"
fi
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then export PATH=/usr/local/cuda/bin:$PATH; fi
command -v nvcc >/dev/null || die "no nvcc (CUDA compiler) on PATH or in /usr/local/cuda/bin"
# The toolkit's root (nvcc on PATH may be a wrapper script): the first candidate with bin/nvcc
# and the CUDA runtime library.
CUDA_ROOT=""
for root in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda \
            "$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")"; do
  if [[ -n $root && -x $root/bin/nvcc ]] && compgen -G "$root/lib*/libcudart.so*" >/dev/null; then
    CUDA_ROOT=$(readlink -f "$root")
    break
  fi
done
[[ -n $CUDA_ROOT ]] || die "no CUDA toolkit (bin/nvcc + lib*/libcudart.so) in CUDA_HOME, CUDA_PATH, /usr/local/cuda"
export CUDACXX=$CUDA_ROOT/bin/nvcc
for tool in cmake ninja python3; do command -v $tool >/dev/null || die "no $tool on PATH"; done
{
  echo "## nvidia-smi"; nvidia-smi 2>&1 || echo "(no nvidia-smi)"
  echo; echo "## nvidia-smi --query-gpu"
  nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version,clocks.max.sm,clocks.max.mem \
    --format=csv 2>&1 || true
  echo; echo "## toolchain ($CUDA_ROOT)"; "$CUDACXX" --version | tail -n2; cmake --version | head -n1; echo "ninja $(ninja --version)"
  python3 -VV; echo "cores: $(nproc)"; free -g | head -n2
  echo; echo "## build target: CMAKE_CUDA_ARCHITECTURES=$CC"
} >"$OUT/device.txt"
echo "[gpu] compute capability $CC, $(nproc) cores, CUDA in $CUDA_ROOT"

# ---- 2. the pinned llama.cpp tree (carried, trimmed) ----
phase source
python3 bench/gpu_prepare.py unpack

# ---- 3. a fresh venv from the carried wheels (the device has no package index) ----
phase venv
PYV=$(python3 -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
compgen -G "$WHEELS/numpy-*-cp$PYV-*.whl" >/dev/null \
  || die "no carried wheels for CPython ${PYV:0:1}.${PYV:1} (python3 here): run bench/gpu_prepare.py --pythons with it"
rm -rf "$VENV"
python3 -m venv --without-pip "$VENV"  # pip comes from the carried wheel: no ensurepip needed
PIP_WHEEL=$(compgen -G "$WHEELS/pip-*.whl" | head -n1)
"$VENV/bin/python" "$PIP_WHEEL/pip" install -q --no-index --disable-pip-version-check "$PIP_WHEEL"
PY="$VENV/bin/python"
"$PY" -m pip install -q --no-index --disable-pip-version-check --find-links "$WHEELS" -r "$CARRY/requirements.txt"
"$PY" -c 'import os, sysconfig; h = sysconfig.get_paths()["include"]; assert os.path.isfile(h + "/Python.h"), h' \
  || die "this Python has no development headers (Python.h): the extension cannot be built"

# ---- 4. the model, made in the background while mr builds ----
phase model
mkdir -p "$(dirname "$MODEL")"
"$PY" -m bench.random_model model "$CARRY/smollm2-header.gguf" "$MODEL" --type q8_0 &
MODEL_PID=$!

# ---- 5. mr + llama-bench + llama-batched-bench: one CMake build, CUDA for this GPU only ----
phase build
export MR_CUDA=1 CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
DEFINES=(-DCMAKE_CUDA_ARCHITECTURES="$CC" -DMR_LLAMA_TOOLS=ON -DGGML_CUDA=ON -DGGML_CUDA_NCCL=OFF)
for lib in cublas cuda; do  # ggml-cuda links cuBLAS and the driver (libcuda)
  var=CUDA_cublas_LIBRARY; [[ $lib == cuda ]] && var=CUDA_cuda_driver_LIBRARY
  if found=$(cuda_lib_elsewhere $lib); then
    [[ -z $found ]] && continue  # in the toolkit
    echo "[gpu] lib$lib is not in the CUDA toolkit; using $found"
    DEFINES+=("-D$var=$found")
    LD_LIBRARY_PATH="$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LD_LIBRARY_PATH
    inc=$(dirname "$(dirname "$found")")/include
    if [[ $lib == cublas && -f $inc/cublas_v2.h ]]; then DEFINES+=(-DCMAKE_CUDA_FLAGS=-I"$inc"); fi
  elif [[ $REHEARSAL == 1 ]]; then
    # configure-only: a stand-in file lets CMake generate; it is never compiled against or linked
    echo "[gpu] REHEARSAL: lib$lib is nowhere on this machine; a stand-in path for $var (never linked)" >&2
    DEFINES+=("-D$var=$(compgen -G "$CUDA_ROOT/lib*/libcudart.so*" | head -n1)")
  else
    die "lib$lib is neither in the CUDA toolkit nor in a pip wheel, /usr/local/nvidia/lib64 or ldconfig's cache"
  fi
done
echo "## build flags: MR_CUDA=1 CMAKE_BUILD_PARALLEL_LEVEL=$CMAKE_BUILD_PARALLEL_LEVEL ${DEFINES[*]}" >>"$OUT/device.txt"
if [[ $REHEARSAL == 1 ]]; then
  cmake -S . -B build/gpu-rehearsal -G Ninja -DCMAKE_BUILD_TYPE=Release "${DEFINES[@]}" \
    -DPython_EXECUTABLE="$PY" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" >"$OUT/build.log" 2>&1 \
    || { tail -n 40 "$OUT/build.log"; die "CMake configure failed (build.log)"; }
  targets=$(ninja -C build/gpu-rehearsal -t targets all)
  for t in _native llama-bench llama-batched-bench llama-mtmd-cli ggml-cuda; do
    grep -q "^$t: " <<<"$targets" || die "the configured build has no target $t"
  done
  grep -E '^(GGML_CUDA|CMAKE_CUDA_ARCHITECTURES|CMAKE_CUDA_COMPILER|LLAMA_BUILD_TOOLS|GGML_NATIVE)(:[A-Z]+)?=' \
    build/gpu-rehearsal/CMakeCache.txt >>"$OUT/device.txt"
  wait "$MODEL_PID" || die "the model generator failed"
  phase end
  cat "$OUT/timings.txt"
  echo "[gpu] REHEARSAL ONLY: configured with CUDA (targets _native, llama-bench, llama-batched-bench," \
    "llama-mtmd-cli, ggml-cuda present) and made the model; nothing was built, tested or measured" >&2
  exit 3
fi
"$PY" -m pip install -v --no-index --no-deps --no-build-isolation --disable-pip-version-check \
  -Cbuild-dir=build/gpu "${DEFINES[@]/#-D/-Ccmake.define.}" -e . >"$OUT/build.log" 2>&1 \
  || { tail -n 60 "$OUT/build.log"; die "building mr with CUDA failed (build.log)"; }
TOOLS=(llama-bench llama-batched-bench llama-mtmd-cli)
cmake --build build/gpu --target "${TOOLS[@]}" >>"$OUT/build.log" 2>&1 \
  || { tail -n 60 "$OUT/build.log"; die "building ${TOOLS[*]} failed (build.log)"; }
mkdir -p bench/build/bin  # where bench/llama_tools.py looks for the yardsticks
for t in "${TOOLS[@]}"; do cp "build/gpu/bin/$t" bench/build/bin/; done
grep -E '^(GGML_CUDA[A-Z_]*|CMAKE_CUDA_ARCHITECTURES|CMAKE_CUDA_COMPILER|CMAKE_CUDA_FLAGS|CMAKE_BUILD_TYPE|GGML_NATIVE|LLAMA_BUILD_TOOLS)(:[A-Z]+)?=' \
  build/gpu/CMakeCache.txt >>"$OUT/device.txt" || true
INFO=$("$PY" -c 'from mr import _native; print(_native.system_info())')
echo "## mr system_info: $INFO" >>"$OUT/device.txt"
[[ $INFO == *CUDA* ]] || die "mr was built but its native module has no CUDA backend: $INFO"
wait "$MODEL_PID" || die "the model generator failed"

# ---- 6. the gpu-marked tests (a skip fails here: MR_REQUIRE_GPU=1) ----
phase tests
MR_REQUIRE_GPU=1 MR_GPU_MODEL=$MODEL timeout 240 "$PY" -m pytest -p no:cacheprovider -m gpu -v -s -rA \
  tests/gpu 2>&1 | tee "$OUT/pytest.txt" || FAILED+=(tests)

# ---- 7. the bench: decode and concurrency at 1..64 (vs llama-bench, llama-batched-bench), spec, vision ----
phase bench
LEFT=$((BUDGET_S - SECONDS))
if ((LEFT < 60)); then
  echo "[gpu] NO BENCH: only ${LEFT} s of the ${BUDGET_S} s budget left" >&2
  FAILED+=(bench-skipped)
else
  PART_S=$((LEFT / 6 > 90 ? 90 : LEFT / 6))  # four parts, each may overrun by one repetition
  echo "[gpu] bench with --part-seconds $PART_S (${LEFT} s left)"
  # spec: mr serve with --spec auto vs off (llama-server is not built here; the random weights
  # copy nothing, so this shows what trying to draft costs on the GPU, not what drafts gain);
  # vision: mr's engine and mr serve (the parts start no llama-server here: --no-build)
  timeout $((LEFT - 10)) "$PY" -m bench decode concurrency spec vision --no-build --model "$MODEL" \
    --levels 1,4,8,16,32,64 --slots 64 --ctx-size 16384 --gen-tokens 128 --reps 3 \
    --part-seconds "$PART_S" --out "$OUT/bench" || FAILED+=(bench)
fi

# ---- 8. the table for bench/README.md ----
phase end
echo; echo "==== timings ===="; cat "$OUT/timings.txt"
echo; echo "==== bench/README.md table (from $OUT/bench/summary.md) ===="
if [[ -f $OUT/bench/summary.md ]]; then
  cat "$OUT/bench/summary.md"
else  # the bench was cut short: its figures are still in results.jsonl, one record a line
  echo "(no summary.md; the last records of results.jsonl:)"
  tail -n 40 "$OUT/bench/results.jsonl" 2>/dev/null || echo "(no results.jsonl either)"
fi
n_files=$(find "$OUT" -type f | wc -l)
((n_files <= 8)) || echo "[gpu] WARNING: $n_files files under \$OUT; only 8 come back" >&2
if ((${#FAILED[@]})); then
  echo "[gpu] FAILED: ${FAILED[*]}" >&2
  exit 1
fi
echo "[gpu] OK in ${SECONDS} s"
