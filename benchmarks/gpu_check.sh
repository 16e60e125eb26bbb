#!/bin/bash
# One call on a lent GPU machine (the `device` tool): build, test, sanitise and time in one go,
# stage by stage under time limits, logs under $OUT. Usage, from the repository root:
#   bash benchmarks/gpu_check.sh [STAGES]     STAGES: any of build,smoke,tests,exchanges,bench,steps,isa,sanitize
# (default: all, in that order: the most telling first, for a call cut short). The build is a
# plain CMake build into build/gpu (the machine has pybind11, ninja and nvcc but no network); the
# modules are copied into python/fusedrnn and the package is imported from there (PYTHONPATH), so
# nothing is pip-installed. First run (2026-11-30, H200): build 42 s, tests 15 s, bench 45 s.
set -u
OUT=${OUT:-/tmp/gpu_check}
LOG=$OUT/logs  # packed into $OUT/logs.tgz at the end: the device tool returns at most 8 files
mkdir -p "$LOG"
STAGES=${1:-build,smoke,tests,exchanges,bench,steps,isa,sanitize}
PY=${PYTHON:-python3}
export PY OUT
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH}
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
has() { [[ ",$STAGES," == *",$1,"* ]]; }
stage() {  # stage NAME LIMIT_S LOG CMD...: run CMD under a time limit, note its exit status and time
  local name=$1 limit=$2 log=$3 t0=$SECONDS rc
  shift 3
  timeout -k 10 "$limit" "$@" >"$LOG/$log" 2>&1
  rc=$?
  printf '%-9s rc=%-3s %4ss  %s\n' "$name" "$rc" "$((SECONDS - t0))" "$(tail -n 1 "$LOG/$log" | cut -c1-150)" | tee -a "$SUMMARY"
  return $rc
}

{ nvidia-smi; nvcc --version | tail -n 2; lscpu | grep -E 'Model name|^CPU\(s\)|Flags' | cut -c1-400; } >"$LOG/machine.txt" 2>&1

if has build; then
  build() {
    cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DFUSEDRNN_CUDA=ON \
      -DPython_EXECUTABLE="$(command -v "$PY")" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" \
      "-DCMAKE_CUDA_FLAGS=--threads=3 -Xptxas=-v" &&
      cmake --build build/gpu -j 16 &&
      cp build/gpu/_C*.so build/gpu/_cuda*.so python/fusedrnn/
  }
  export -f build
  stage build 300 build.log bash -c build || { tail -n 40 "$LOG/build.log"; tar -czf "$OUT/logs.tgz" -C "$LOG" .; exit 1; }
  grep -E 'spill|Used [0-9]+ registers' "$LOG/build.log" | sort | uniq -c | sort -rn | head -n 40 >"$LOG/ptxas.txt"
fi

if has smoke; then
  stage smoke 60 smoke.log "$PY" -c "
import numpy as np, fusedrnn
from fusedrnn import cuda, functional
print(fusedrnn.build_info()); assert fusedrnn.cuda_available(), 'no GPU seen'
rng = np.random.default_rng(1)
for cell in ('rnn_tanh', 'rnn_relu', 'lstm', 'gru'):
    G = {'lstm': 4, 'gru': 3}.get(cell, 1); T, B, I, H = 5, 3, 4, 33
    x, h0, c0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    w, r = rng.uniform(-.2, .2, (G * H, I)), rng.uniform(-.2, .2, (G * H, H))
    cpu = functional._forward(cell, x, h0, c0 if cell == 'lstm' else None, w, r, None, None, None, False, False)[0]
    for path in ('stepwise', 'persistent'):
        d = [cuda.DeviceArray.from_numpy(a) for a in (x, h0, c0, w, r)]
        y = cuda.forward(cell, d[0], d[1], d[2] if cell == 'lstm' else None, d[3], d[4], None, None, None, False, False, path=path)[0]
        print(cell, path, 'max abs error vs CPU', float(np.max(np.abs(y.numpy() - cpu))))
print('smoke ok')
"
fi

if has tests; then
  stage tests 180 tests.log "$PY" -m pytest tests/test_cuda.py tests/test_layers.py tests/test_demo.py -k "cuda or gpu" \
    -q -n 8 --timeout 100 --timeout-method=thread --tb=short -p no:cacheprovider -p no:benchmark -o addopts="-ra --strict-markers"
  grep -E '^(FAILED|ERROR)' "$LOG/tests.log" | cut -c1-220 | head -n 80 >"$LOG/failures.txt"
fi

if has exchanges; then  # the persistent tests again with each way of passing the state forced (and the
  # register-resident backward, which runs only when one is forced)
  for x in tagged flags; do
    export FUSEDRNN_CUDA_PERSISTENT=$x
    stage "$x" 120 "tests-$x.log" "$PY" -m pytest tests/test_cuda.py -k persistent \
      -q -n 8 --timeout 100 --timeout-method=thread --tb=short -p no:cacheprovider -p no:benchmark -o addopts="-ra --strict-markers"
    grep -E '^(FAILED|ERROR)' "$LOG/tests-$x.log" | cut -c1-220 | head -n 40 >>"$LOG/failures.txt"
  done
  unset FUSEDRNN_CUDA_PERSISTENT
fi

if has bench; then
  stage bench 150 bench.log "$PY" -m fusedrnn bench --device cuda --repeats 10
  cat "$LOG/bench.log"
fi
if has steps; then  # where a persistent step's time goes (benchmarks/gpu_step_latency.py)
  stage steps 240 steps.log "$PY" benchmarks/gpu_step_latency.py --repeats 15
  cat "$LOG/steps.log"
fi
if has isa; then  # the CPU kernels on this machine's ISAs (AVX-512 where the CPU has it)
  stage isa 120 isa.log "$PY" -m pytest tests/test_isa_threads.py tests/test_cpu.py -q -n 8 --timeout 200 --tb=short \
    -p no:cacheprovider -p no:benchmark -o addopts="-ra --strict-markers"
fi

if has sanitize; then  # memory errors anywhere, shared-memory races in the persistent kernels
  SEL="test_dtypes_lengths_reverse and (float32 or bfloat16) and 17-3-7"
  stage memcheck 90 memcheck.log compute-sanitizer --tool memcheck --error-exitcode 9 \
    "$PY" -m pytest tests/test_cuda.py -q -p no:cacheprovider -o addopts="" -k "$SEL"
  stage racecheck 90 racecheck.log compute-sanitizer --tool racecheck --error-exitcode 9 \
    "$PY" -m pytest tests/test_cuda.py -q -p no:cacheprovider -o addopts="" -k "$SEL and persistent"
  export FUSEDRNN_CUDA_PERSISTENT=flags  # the register-resident kernels, the backward too
  stage memcheck-flags 90 memcheck-flags.log compute-sanitizer --tool memcheck --error-exitcode 9 \
    "$PY" -m pytest tests/test_cuda.py -q -p no:cacheprovider -o addopts="" -k "$SEL and persistent"
  stage racecheck-flags 90 racecheck-flags.log compute-sanitizer --tool racecheck --error-exitcode 9 \
    "$PY" -m pytest tests/test_cuda.py -q -p no:cacheprovider -o addopts="" -k "$SEL and persistent"
  unset FUSEDRNN_CUDA_PERSISTENT
fi

tar -czf "$OUT/logs.tgz" -C "$LOG" . && rm -r "$LOG"
echo "---- summary"
cat "$SUMMARY"
