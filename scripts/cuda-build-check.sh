#!/usr/bin/env bash
# Proves that mr's CUDA build (MR_CUDA=1, i.e. llama.cpp's GGML_CUDA backend) compiles and links on
# a machine with no GPU, no NVIDIA driver and no system CUDA toolkit, from NVIDIA's PyPI wheels only:
#
#   ./scripts/cuda-build-check.sh [--configure-only] [-j N]
#
# 1. a throwaway venv in build/cuda-check/venv with NVIDIA's compiler, runtime, cuBLAS and CCCL
#    wheels (pinned below), plus cmake, ninja and pybind11;
# 2. a toolkit-shaped folder of symlinks into those wheels, build/cuda-check/toolkit (bin/,
#    include/, nvvm/, lib64/ with the unversioned .so names CMake looks for, and lib64/stubs/
#    libcuda.so, a link-time stand-in for the driver generated from the wheel's cuda.h);
# 3. CMake + Ninja on this project into build/cuda-check/build, with the options the normal build
#    (pyproject.toml) uses plus GGML_CUDA=ON, for one architecture: CMAKE_CUDA_ARCHITECTURES=89;
# 4. readelf -d / ldd of the built module (it must need libcudart and libcublas), and an import of
#    it. Without an NVIDIA driver that import fails on libcuda.so.1; the script says so and that
#    is the expected outcome here: this checks compiling and linking, not running.
#
# Why CUDA 13 and not 12: the CUDA 12 wheel nvidia-cuda-nvcc-cu12 (looked at: 12.0.76, 12.4.131,
# 12.8.93 and 12.9.86, the newest) carries only ptxas, libnvvm and libdevice (for JIT users such as
# Numba): no nvcc driver, cicc, cudafe++, fatbinary or nvlink, so nothing can compile .cu files
# from the cu12 wheels. NVIDIA's complete compiler on PyPI starts with CUDA 13 (nvidia-cuda-nvcc + nvidia-nvvm
# for cicc + nvidia-cuda-crt for the crt headers), whose wheels all install into one prefix,
# site-packages/nvidia/cu13. No wheel ships the driver stub (lib/stubs/libcuda.so) either.
#
# The full build compiles all of llama.cpp's CUDA kernels (about 190 .cu files) for sm_89: it
# takes long on a small machine (an estimate: an hour or more on 2 cores, where the small
# arange.cu and sum.cu took 25 s together; the template instances are far heavier). ccache, when
# present, keeps reruns short.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

usage() { sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; }
CONFIGURE_ONLY=0
JOBS=${MR_JOBS:-$(nproc)}
while (($#)); do
  case $1 in
    --configure-only) CONFIGURE_ONLY=1 ;;
    -j) (($# >= 2)) || { usage >&2; exit 2; }; JOBS=$2; shift ;;
    -j*) JOBS=${1#-j} ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || { echo "-j wants a positive number, got '$JOBS'" >&2; exit 2; }

# One CUDA release, 13.0 Update 2, as NVIDIA's version manifest pairs it (cuBLAS has its own
# numbering). nvcc finds cicc (nvidia-nvvm) and the crt headers (nvidia-cuda-crt) in the same prefix.
CUDA_WHEELS=(
  nvidia-cuda-nvcc==13.0.88     # nvcc, cudafe++, fatbinary, nvlink, ptxas
  nvidia-nvvm==13.0.88          # nvvm/bin/cicc, libdevice
  nvidia-cuda-crt==13.0.88      # include/crt (host_config.h, ...)
  nvidia-cuda-runtime==13.0.96  # cuda_runtime.h, cuda.h, libcudart.so.13
  nvidia-cuda-cccl==13.0.85     # CUB / Thrust / libcu++ (ggml-cuda uses CUB)
  nvidia-cublas==13.1.0.3       # libcublas.so.13, libcublasLt.so.13, cublas_v2.h
)
# The same build tools scripts/setup.sh installs (cmake >= 3.21 as pyproject.toml requires).
BUILD_TOOLS=("cmake>=3.21" ninja "pybind11>=2.13")
ARCH=89  # sm_89 (Ada): one real architecture keeps the compile to one pass per kernel

CHECK=build/cuda-check  # under build/, which .gitignore ignores
VENV=$ROOT/$CHECK/venv
TK=$ROOT/$CHECK/toolkit
BUILD=$ROOT/$CHECK/build
VPY=$VENV/bin/python

T0=$SECONDS
say() { printf '[cuda-check %4ds] %s\n' $((SECONDS - T0)) "$*"; }
die() { printf '[cuda-check %4ds] FAILED: %s\n' $((SECONDS - T0)) "$*" >&2; exit 1; }

# ---- 1. the throwaway venv with NVIDIA's wheels ----
say "venv $CHECK/venv: ${CUDA_WHEELS[*]} ${BUILD_TOOLS[*]}"
[[ -x $VPY ]] || "${PYTHON:-python3}" -m venv "$VENV"
# pip skips what is already installed at the pinned version; cuBLAS is a 420 MB download once.
"$VPY" -m pip install -q --disable-pip-version-check "${CUDA_WHEELS[@]}" "${BUILD_TOOLS[@]}"
"$VPY" -c 'import os, sysconfig; h = sysconfig.get_paths()["include"]; assert os.path.isfile(h + "/Python.h"), h' \
  || die "this Python has no development headers (Python.h): the extension cannot be built"
CU=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')/nvidia/cu13
[[ -d $CU ]] || die "no $CU: the CUDA 13 wheels did not install where expected"

# ---- 2. a toolkit-shaped folder of symlinks ----
# nvcc reads nvcc.profile from the directory it was *invoked* from (a symlink is not resolved),
# so TOP is this folder and nvcc looks for $TOP/nvvm/bin/cicc, $TOP/include and $TOP/lib64 here;
# CMake's FindCUDAToolkit looks for lib64/libcudart.so (unversioned) and lib64/stubs/libcuda.so.
# Rebuilt on every run: it is only symlinks and one small stub.
say "toolkit $CHECK/toolkit -> $CU"
rm -rf "$TK"
mkdir -p "$TK/bin" "$TK/lib64/stubs"
for f in "$CU"/bin/*; do ln -s "$f" "$TK/bin/"; done  # nvcc, nvcc.profile, crt/, cudafe++, ...
ln -s "$CU/include" "$TK/include"
ln -s "$CU/nvvm" "$TK/nvvm"
for f in "$CU"/lib/*; do
  ln -s "$f" "$TK/lib64/"
  base=$(basename "$f")
  # libcudart.so.13 -> also libcudart.so: find_library() and -lcudart want the unversioned name
  [[ $base =~ ^(lib.+\.so)\.[0-9]+$ ]] && ln -sf "$base" "$TK/lib64/${BASH_REMATCH[1]}"
done
ln -s lib64 "$TK/lib"
for need in bin/nvcc bin/nvcc.profile bin/cudafe++ bin/fatbinary bin/nvlink bin/ptxas nvvm/bin/cicc \
            nvvm/libdevice/libdevice.10.bc include/cuda_runtime.h include/crt/host_config.h \
            include/cccl/cub/cub.cuh include/cublas_v2.h lib64/libcudart.so lib64/libcudart_static.a \
            lib64/libcublas.so lib64/libcublasLt.so; do
  [[ -e $TK/$need ]] || die "the wheels lack $need (toolkit folder $TK)"
done

# The driver API (libcuda.so.1) comes with the NVIDIA driver, not with the toolkit; a toolkit
# carries lib64/stubs/libcuda.so only to link against, and no wheel on PyPI ships that stub.
# ggml-cuda links the driver (CUDA::cuda_driver, for its virtual-memory pool), so we make the same
# kind of stub: every cu* function cuda.h declares (as written and as its macros rename them, e.g.
# cuMemAlloc -> cuMemAlloc_v2), empty, in a library whose SONAME is libcuda.so.1. Like NVIDIA's, it
# sits in stubs/ under the name libcuda.so only, so nothing can ever load it at run time.
# It is built outside the toolkit folder, and again only when cuda.h's list changes: a new stub
# file on every run would make Ninja relink the module every time.
STUB=$ROOT/$CHECK/driver-stub
mkdir -p "$STUB"
"$VPY" - "$TK/include" >"$STUB/libcuda.c.new" <<'PY'
import re, subprocess, sys
inc = sys.argv[1]
names = set(re.findall(r"\bCUresult\s+CUDAAPI\s+(cu\w+)\s*\(", open(f"{inc}/cuda.h").read()))
for extra in ([], ["-DCUDA_API_PER_THREAD_DEFAULT_STREAM"]):  # both stream flavours' names
    pre = subprocess.run(["gcc", "-E", "-P", "-x", "c", "-I", inc, *extra, f"{inc}/cuda.h"],
                         capture_output=True, text=True, check=True).stdout
    names |= set(re.findall(r"\b(cu[A-Z]\w*)\s*\(", pre))
print("/* link-time stand-in for libcuda.so.1, made by scripts/cuda-build-check.sh from cuda.h */")
for n in sorted(names):
    print(f"void {n}(void) {{}}")
PY
if [[ ! -f $STUB/libcuda.so ]] || ! cmp -s "$STUB/libcuda.c.new" "$STUB/libcuda.c"; then
  mv "$STUB/libcuda.c.new" "$STUB/libcuda.c"
  gcc -shared -fPIC -w -Wl,-soname,libcuda.so.1 -o "$STUB/libcuda.so" "$STUB/libcuda.c"
fi
rm -f "$STUB/libcuda.c.new"
ln -s "$STUB/libcuda.so" "$TK/lib64/stubs/libcuda.so"
say "driver stub lib64/stubs/libcuda.so (SONAME libcuda.so.1): $(grep -c '^void ' "$STUB/libcuda.c") functions"

# ---- 3. configure: the normal build's options (pyproject.toml) + GGML_CUDA=ON, one architecture ----
# Our toolkit first on PATH and named explicitly, so that no other nvcc (a /usr/local/cuda, an nvcc
# on PATH) is picked up; the cache is checked for that below. The host compiler is the system g++.
export PATH="$TK/bin:$VENV/bin:$PATH"
export CUDACXX=$TK/bin/nvcc
export CUDAHOSTCXX=${CUDAHOSTCXX:-$(command -v g++)}
export CCACHE_BASEDIR=$ROOT  # as scripts/setup.sh: cache hits across build directories
say "nvcc: $("$CUDACXX" --version | tail -n 2 | head -n 1); host compiler: $CUDAHOSTCXX ($("$CUDAHOSTCXX" -dumpfullversion))"
mkdir -p "$BUILD"
say "configure $CHECK/build (CMAKE_CUDA_ARCHITECTURES=$ARCH)"
T_CONF=$SECONDS
cmake -S "$ROOT" -B "$BUILD" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE="${MR_NATIVE:-ON}" \
  -DGGML_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
  -DCMAKE_CUDA_COMPILER="$CUDACXX" \
  -DCUDAToolkit_ROOT="$TK" \
  -DPython_EXECUTABLE="$VPY" \
  -Dpybind11_DIR="$("$VPY" -m pybind11 --cmakedir)" \
  >"$ROOT/$CHECK/configure.log" 2>&1 \
  || { tail -n 40 "$ROOT/$CHECK/configure.log"; die "CMake configure failed ($CHECK/configure.log)"; }
say "configured in $((SECONDS - T_CONF)) s; CUDA lines of $CHECK/configure.log:"
grep -i -E 'cuda|nccl' "$ROOT/$CHECK/configure.log" | sed 's/^/    /' || true
cache() { sed -n "s/^$1:[A-Z]*=//p" "$BUILD/CMakeCache.txt"; }
for var in CMAKE_CUDA_COMPILER CUDAToolkit_NVCC_EXECUTABLE CUDA_cudart_LIBRARY CUDA_cublas_LIBRARY \
           CUDA_cuda_driver_LIBRARY; do
  val=$(cache "$var")
  printf '    %-33s %s\n' "$var" "$val"
  [[ $val == "$TK"/* ]] || die "$var is '$val', not in $TK: another CUDA installation was picked up"
done
for var in GGML_CUDA CMAKE_CUDA_ARCHITECTURES GGML_CUDA_GRAPHS GGML_NATIVE CMAKE_BUILD_TYPE; do
  printf '    %-33s %s\n' "$var" "$(cache "$var")"
done
# A re-configure does not repeat CMake's "compiler identification" lines: the detected versions
# come from the file CMake keeps them in.
for var in CMAKE_CUDA_COMPILER_VERSION CMAKE_CUDA_HOST_COMPILER CMAKE_CUDA_HOST_COMPILER_VERSION; do
  printf '    %-33s %s\n' "$var" \
    "$(sed -n "s/^set($var \"\(.*\)\")$/\1/p" "$BUILD"/CMakeFiles/*/CMakeCUDACompiler.cmake | tail -n 1)"
done
[[ $(cache CMAKE_CUDA_ARCHITECTURES) == "$ARCH" ]] || die "CMAKE_CUDA_ARCHITECTURES is not $ARCH"
targets=$(ninja -C "$BUILD" -t targets all)
grep -q '^ggml-cuda: ' <<<"$targets" || die "the configured build has no ggml-cuda target"
if ((CONFIGURE_ONLY)); then
  say "OK (--configure-only): configured with CUDA; nothing compiled"
  exit 0
fi

# ---- 4. build the extension module (llama.cpp's CUDA kernels are most of the time) ----
say "build _native with -j $JOBS (log: $CHECK/build.log)"
T_BUILD=$SECONDS
cmake --build "$BUILD" --target _native -j "$JOBS" 2>&1 | tee "$ROOT/$CHECK/build.log" \
  || die "the CUDA build failed after $((SECONDS - T_BUILD)) s ($CHECK/build.log)"
say "built in $((SECONDS - T_BUILD)) s"
MOD=$(compgen -G "$BUILD/_native*.so" | head -n 1) || true
[[ -n $MOD ]] || die "no _native*.so in $BUILD"

# ---- 5. what the module links ----
say "readelf -d $MOD (NEEDED / RUNPATH):"
readelf -d "$MOD" | grep -E 'NEEDED|RPATH|RUNPATH' | sed 's/^/    /'
say "ldd $MOD:"
ldd "$MOD" | sed 's/^/    /' || true  # ldd exits non-zero on some "not found" cases; we judge below
needed=$(readelf -d "$MOD" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
for lib in libcudart.so libcublas.so libcuda.so; do
  grep -q "^$lib\." <<<"$needed" || die "the module does not link $lib (NEEDED: $(echo $needed))"
done
fatbin=$(readelf -S -W "$MOD" | sed -n 's/.*\] \.nv_fatbin  *[A-Z]*  *[0-9a-f]*  *[0-9a-f]*  *\([0-9a-f]*\) .*/\1/p')
[[ -n $fatbin ]] || die "the module has no .nv_fatbin section: no CUDA device code was linked in"
say "device code: a .nv_fatbin section of $((16#$fatbin / 1024)) KiB (built for sm_$ARCH)"
# Every driver function the module uses must exist in the real libcuda.so.1; the stub holds every
# one cuda.h declares, so a missing one here means a header/stub mismatch worth knowing about.
missing=$(comm -23 <(nm -D --undefined-only "$MOD" | awk '{print $2}' | sed 's/@.*//' | grep -E '^cu[A-Z]' | sort -u) \
                   <(nm -D --defined-only "$TK/lib64/stubs/libcuda.so" | awk '{print $3}' | sort -u))
[[ -z $missing ]] || say "WARNING: driver symbols the module needs that the stub lacks: $(echo $missing)"

# ---- 6. import it (a copy of the package with this module; the editable install is not used) ----
STAGE=$ROOT/$CHECK/stage
rm -rf "$STAGE" && mkdir -p "$STAGE"
cp -r python/mr "$STAGE/mr"
find "$STAGE" -name __pycache__ -prune -exec rm -rf {} +
ln -s "$MOD" "$STAGE/mr/"  # its RUNPATH is absolute: a link loads like the file
say "python -c 'import mr._native' with $CHECK/stage/mr/$(basename "$MOD"):"
if out=$(cd "$STAGE" && "$VPY" -c 'import mr._native as n; print(n.__file__); print(n.system_info())' 2>&1); then
  echo "$out" | sed 's/^/    /'
  say "OK: the CUDA module compiled, linked and imported (in $((SECONDS - T0)) s)"
elif grep -q 'libcuda\.so\.1' <<<"$out"; then
  echo "$out" | sed 's/^/    /'
  say "EXPECTED: the import fails because libcuda.so.1 (the NVIDIA driver) is not on this machine;" \
      "the module compiled and linked against libcudart and libcublas, which is what this script checks."
  say "OK: compile + link (in $((SECONDS - T0)) s); loading it needs a machine with the NVIDIA driver"
else
  echo "$out" | sed 's/^/    /'
  die "the import failed for another reason than the missing driver (above)"
fi
