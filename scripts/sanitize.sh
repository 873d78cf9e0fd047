#!/usr/bin/env bash
# Builds mr's native module with sanitizers (MR_SANITIZE, default address,undefined) into
# build/sanitize and runs tests against it under ASan/UBSan. Instrumented: mr's own code, and
# llama.cpp's code that reads model files and requests (the GGUF parser, the model loader and
# vocabulary, the Jinja renderer and the rest of llama-common; CMakeLists.txt's sanitizer
# section), not ggml's kernels.
#   scripts/sanitize.sh [PYTEST ARGS]     the native and engine tests (the hostile GGUF corpus and
#                                         templates among them) and the hostile-template server test
#   scripts/sanitize.sh --fuzz [--long] [EXAMPLES]
#                                         scripts/fuzz.sh's run (same arguments) under the sanitizers
# Python itself is not instrumented, so libasan is preloaded; leak checking is off (the
# interpreter's own allocations would drown it). Findings end the run with the report.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. .venv/bin/activate
SAN="${MR_SANITIZE:-address,undefined}"
BUILD=build/sanitize
# CMAKE_STRIP: pybind11 strips a Release module, and ASan's reports would name no function.
export CCACHE_BASEDIR="$PWD"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_CUDA=OFF \
  -DMR_SANITIZE="$SAN" -DPython_EXECUTABLE="$(command -v python)" -DCMAKE_STRIP="$(command -v true)" \
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
# A report must outlive the test process it aborts, which pytest's output capture would not let it
# do: ASan's go to files (log_path), and pytest captures only Python's own streams (--capture=sys),
# so UBSan's, which GCC's runtime writes to stderr whatever log_path says, stay in this output.
REPORTS="$PWD/$BUILD/reports"
rm -rf "$REPORTS" && mkdir -p "$REPORTS"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1:log_path=$REPORTS/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$REPORTS/ubsan"
PY="$BUILD/venv/bin/python"
"$PY" -c "import mr._native as n; assert '/stage/' in n.__file__, n.__file__; print('sanitized module:', n.__file__)"
if [[ "${1:-}" == "--fuzz" ]]; then
  shift
  # scripts/fuzz.sh's settings and tests, run by the sanitized interpreter.
  if [[ "${1:-}" == "--long" ]]; then
    shift
    export MR_FUZZ_LONG=1 MR_FUZZ_EXAMPLES="${1:-200}"
  else
    export MR_FUZZ_EXAMPLES="${1:-40}"
  fi
  TESTS=(-s tests/server/test_fuzz_loaded.py tests/engine/test_properties.py tests/server/test_openapi.py)
  LIMIT="${MR_FUZZ_TIMEOUT:-3600}"
else
  TESTS=(tests/native tests/engine tests/server/test_hostile_template_api.py "$@")
  LIMIT=3600
fi
status=0
timeout "$LIMIT" "$PY" -m pytest -q -p no:cacheprovider --capture=sys "${TESTS[@]}" || status=$?
if compgen -G "$REPORTS/*" >/dev/null; then
  cat "$REPORTS"/*
  echo "sanitizer findings: the reports above (kept in $REPORTS)" >&2
  [[ $status -ne 0 ]] || status=1
fi
exit "$status"
