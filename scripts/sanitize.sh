#!/usr/bin/env bash
# Builds mr's native module with sanitizers (MR_SANITIZE, default address,undefined) into
# build/sanitize and runs the native and engine tests against it under ASan/UBSan.
# Python itself is not instrumented, so libasan is preloaded; leak checking is off (the
# interpreter's own allocations would drown it). Findings end the run with the report.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. .venv/bin/activate
SAN="${MR_SANITIZE:-address,undefined}"
BUILD=build/sanitize
export CCACHE_BASEDIR="$PWD"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_CUDA=OFF \
  -DMR_SANITIZE="$SAN" -DPython_EXECUTABLE="$(command -v python)" \
  -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" >/dev/null
timeout 3600 cmake --build "$BUILD" --target _native -j "${MR_JOBS:-2}"

# A copy of the package with the sanitized module, on a path the editable install does not
# redirect: a throwaway venv that sees .venv's packages (not its editable hook) and the copy.
STAGE="$BUILD/stage"
rm -rf "$STAGE" && mkdir -p "$STAGE"
cp -r python/mr "$STAGE/mr"
cp "$BUILD"/_native*.so "$STAGE/mr/"
SITE="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
BASE="$(python -c 'import sys; print(sys.base_prefix)')/bin/python3"
[ -x "$BUILD/venv/bin/python" ] || "$BASE" -m venv --without-pip "$BUILD/venv"
VSITE="$("$BUILD/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
printf '%s\n%s\n' "$(cd "$STAGE" && pwd)" "$SITE" > "$VSITE/mr-sanitize.pth"

LIBASAN="$(gcc -print-file-name=libasan.so)"
LIBUBSAN="$(gcc -print-file-name=libubsan.so)"
export LD_PRELOAD="$LIBASAN:$LIBUBSAN"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
"$BUILD/venv/bin/python" -c "import mr._native as n, sys; assert '$STAGE' in n.__file__ or 'stage' in n.__file__, n.__file__; print('sanitized module:', n.__file__)"
# The GGUF corpus test caps its child's address space (RLIMIT_AS), which ASan's shadow memory
# cannot live with; its parsing paths run in the other native tests.
exec timeout 3600 "$BUILD/venv/bin/python" -m pytest -q -p no:cacheprovider \
  --deselect tests/native/test_gguf_corpus.py::test_each_broken_gguf_is_a_clean_error \
  tests/native tests/engine "$@"
