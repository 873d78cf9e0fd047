#!/usr/bin/env bash
# Sets up everything mr needs on a fresh Debian/Ubuntu machine, idempotently:
# system packages (ccache for fast rebuilds, docker-registry for the store tests, haproxy for the
# replica tests), a virtual environment in .venv, and an editable build of mr with a persistent
# build directory.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ccache >/dev/null 2>&1 || need+=(ccache)
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
[ -x /usr/sbin/haproxy ] || need+=(haproxy)  # the replica tests run deploy/haproxy.cfg
command -v g++ >/dev/null 2>&1 || need+=(g++)
if ((${#need[@]})); then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "[mr] installing system packages: ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --disable-pip-version-check --upgrade pip
python -m pip install -q --disable-pip-version-check "scikit-build-core>=0.10" "pybind11>=2.13" cmake ninja

# Editable install: Python files are used in place; the extension is rebuilt in build/editable
# (ccache keeps a one-file C++ change to seconds). Re-run this script after changing C++.
export CCACHE_BASEDIR="$PWD"
echo "[mr] building mr (the first build compiles llama.cpp: a few minutes)" >&2
python -m pip install -q --disable-pip-version-check --no-build-isolation \
  -Cbuild-dir=build/editable -e ".[test]"
