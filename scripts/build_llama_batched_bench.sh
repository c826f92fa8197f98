#!/usr/bin/env bash
# Build llama.cpp's llama-batched-bench from the vendor/llama.cpp tree of the llama-cpp-python source
# distribution (the same llama.cpp the `fast` extra compiles), for benchmarks/lm_throughput.py.
# Needs cmake and a C++ compiler; about as long as the extra's own build on 2 cores.
#   scripts/build_llama_batched_bench.sh [VERSION] [OUT_DIR]
# Prints the path of the binary. PIP (default: python -m pip) downloads the sdist.
set -euo pipefail
VERSION=${1:-$(python -c "import llama_cpp; print(llama_cpp.__version__)" 2>/dev/null || echo 0.3.36)}
OUT=${2:-${LMLAB_CACHE:-$HOME/.cache/lmlab}/llama.cpp-$VERSION}
PIP=${PIP:-python -m pip}
BIN="$OUT/build/bin/llama-batched-bench"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
command -v cmake >/dev/null && command -v g++ >/dev/null || { echo "error: needs cmake and g++ (apt-get install cmake g++)" >&2; exit 1; }
mkdir -p "$OUT"
SDIST="$OUT/llama_cpp_python-$VERSION.tar.gz"
if [ ! -f "$SDIST" ]; then
  $PIP download --no-deps --no-binary :all: --no-build-isolation "llama-cpp-python==$VERSION" -d "$OUT" >&2 || \
  $PIP download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$OUT" >&2
fi
[ -d "$OUT/src" ] || { mkdir -p "$OUT/src" && tar xzf "$SDIST" -C "$OUT/src" --strip-components=1; }
cmake -S "$OUT/src/vendor/llama.cpp" -B "$OUT/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_TOOLS=ON -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$OUT/build" --target llama-batched-bench -j "${CMAKE_BUILD_PARALLEL_LEVEL:-1}" >&2
echo "$BIN"
