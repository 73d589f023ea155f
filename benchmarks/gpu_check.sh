#!/usr/bin/env bash
# The GPU check, one command: the gpu-marked tests, bench_kd.py and bench_cohort.py on the device,
# and a real-data run's first losses on the CPU and the device (see benchmarks/gpu_check.py).
#   benchmarks/gpu_check.sh                        # device cuda
#   benchmarks/gpu_check.sh --device cpu --quick   # the same steps on a CPU, tiny
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "${PYTHON:-python}" "$here/gpu_check.py" "$@"
