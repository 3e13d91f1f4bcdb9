#!/usr/bin/env bash
# Everything a session with a lent GPU should check, in one call of about 8 minutes.
#
#   bash profiling/gpu_session.sh              # on the GPU machine, from the repository root
#                                              # (device tool: run with timeout_s=600)
#   bash profiling/gpu_session.sh --emulator   # dry run here: the host emulator of the CUDA
#                                              # kernels, small sizes (times mean nothing)
#
# Why one script: a task that is lent a GPU gets about 15 minutes of device time in all,
# starting the machine included (/work/.library/device/README.md), so the checks run in
# one prepared call, most valuable first, each under its own time limit:
#
#   1. sanity   versions, the GPU, one CPU and one CUDA kernel call (stops here on failure)
#   2. tests    pytest -m gpu: every CUDA kernel and fit bitwise against the reference
#   3. audit    reprogls audit on the CPU (2 and 1 threads) and the GPU: the JSON report
#               comes back as audit.json, for 'reprogls compare' against other machines'
#   4. fits     profiling/gpu_fits.py: S, M and L on the GPU against the CPU, fingerprints
#               (then S and M with plug-in SEs, into the same log)
#   5. kernels  profiling/gpu_kernels.py: each CUDA kernel on device-resident data, GB/s
#               against a device-to-device copy (CUDA events), the normal operator's
#               two ways, X^T X (roofline.py --device cuda times the public kernels,
#               whose results cross to the host: the copy hid the kernels on the H100)
#
# Logs go to $OUT (the device tool's folder that comes back; default profiling/out/gpu):
# summary.txt (with the audit's verdict), sanity/tests/fits/kernels.log, audit.json and
# gpu-kernels.md (the tool brings back 8 files at most). The last lines printed are the
# summary.
set -u
emulator=0
if [ "${1:-}" = "--emulator" ]; then emulator=1; fi
OUT=${OUT:-profiling/out/gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
summary="$OUT/summary.txt"
: > "$summary"

# the whole script stays inside one device call (at most 600 s): every step's limit is
# cut to what is left of BUDGET seconds, and a step with under 15 s left is skipped
BUDGET=${GPU_SESSION_SECONDS:-560}
began=$(date +%s)

# step NAME SECONDS CMD...: run CMD under a time limit, output to $OUT/NAME.log
step() {
    local name=$1 limit=$2 start rc left
    shift 2
    left=$(( BUDGET - ($(date +%s) - began) ))
    if [ "$left" -lt 15 ]; then
        echo "$name: skipped, $left s of the budget left" | tee -a "$summary"
        return 124
    fi
    if [ "$limit" -gt "$left" ]; then limit=$left; fi
    start=$(date +%s)
    timeout -k 5 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    echo "$name: exit $rc after $(( $(date +%s) - start )) s (limit $limit s)" | tee -a "$summary"
    return $rc
}

if [ $emulator = 1 ]; then
    export REPROGLS_CUDA_EMULATOR=1
    tests=(-m gpu -k "golden and gram-compensated")  # (the whole suite runs in CI anyway)
    fit_sizes=(S)
    repeat=1
    kernel_args=(--small --repeat 1)
    audit_args=(--devices cpu cuda:0 --problems gram-compensated)  # quick
else
    # 16 cores there: 8 workers (each with its own CUDA context; NVRTC's output and
    # Numba's cache are shared on disk); a module that fails to import (a test oracle
    # missing from the machine's image) must not stop the gpu tests of the others
    tests=(-m gpu -n 8 --continue-on-collection-errors)
    fit_sizes=(S M L)
    repeat=3
    kernel_args=()
    audit_args=()
fi

# 1. sanity: the versions, the card, and one call per device (compiles the CPU kernels)
sanity='
import os, subprocess, sys, numpy as np
if os.environ.get("REPROGLS_CUDA_EMULATOR"):
    from tests import cuda_emulator
    cuda_emulator.install()
else:
    print(subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout)
import numba, reprogls
from reprogls import kernels
print("python", sys.version.split()[0], "numpy", np.__version__, "numba", numba.__version__)
try:
    import cupy
    print("cupy", cupy.__version__)
except ImportError as e:
    print("cupy missing:", e)
print("devices", kernels.available_devices())
x = np.random.default_rng(0).standard_normal(1 << 20)
cpu = kernels.sum(x, device="cpu")
gpu = kernels.sum(x, device="cuda")
print("sum cpu", cpu.hex(), "cuda", float(gpu).hex(), "equal" if cpu == float(gpu) else "DIFFERENT")
kernels.warmup()
print("warm-up done")
'
if ! step sanity 150 "$PY" -c "$sanity"; then
    echo "sanity failed: see $OUT/sanity.log (last lines below)"
    tail -n 30 "$OUT/sanity.log"
    exit 1
fi

# 2. the gpu tests (the CPU kernels are compiled by now: Numba's cache)
step tests 240 "$PY" -m pytest -q -p no:cacheprovider --maxfail=50 \
    "${tests[@]}" tests

# 3. the determinism audit on every device (its verdict goes into the summary, its log
#    away: 8 files come back at most)
audit='
import os, sys
if os.environ.get("REPROGLS_CUDA_EMULATOR"):
    from tests import cuda_emulator
    cuda_emulator.install()
from reprogls import cli
sys.exit(cli.main(["audit", "--threads", "1", "--output", *sys.argv[1:]]))
'
step audit 90 "$PY" -c "$audit" "$OUT/audit.json" ${audit_args[@]+"${audit_args[@]}"}
cat "$OUT/audit.log" >> "$summary" && rm -f "$OUT/audit.log"

# 4. fits on the GPU against the CPU (without SEs: S, M, L; with: S, M; one log)
plugin=""
if [ $emulator = 0 ]; then
    plugin="&& $PY profiling/gpu_fits.py --sizes S M --repeat 1 --cov plugin"
fi
step fits 180 bash -c "$PY profiling/gpu_fits.py --sizes ${fit_sizes[*]} --repeat $repeat $plugin"

# 5. the kernels on the GPU (writes gpu-kernels.md into $OUT)
step kernels 90 "$PY" profiling/gpu_kernels.py --out "$OUT" ${kernel_args[@]+"${kernel_args[@]}"}

echo "---- summary ($OUT)"
cat "$summary"
echo "---- tests"
tail -n 3 "$OUT/tests.log"
echo "---- fits"
if [ -f "$OUT/fits.log" ]; then grep -E "^fit " "$OUT/fits.log" || tail -n 5 "$OUT/fits.log"; fi
if [ -f "$OUT/gpu-kernels.md" ]; then
    echo "---- kernels"
    cat "$OUT/gpu-kernels.md"
fi
