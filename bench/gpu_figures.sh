#!/usr/bin/env bash
# The GPU figures of the adapter pipeline, for a machine with CUDA and no network (the `device`
# tool's H100/H200: PyTorch, transformers, peft, safetensors, tokenizers and pytest are there;
# loguru is not). Here, with network, first:   make gpu-wheels   (fills .wheels/, git-ignored)
# then on the device, carrying .wheels:         bash bench/gpu_figures.sh "$OUT"
# It installs the carried wheels into the device's python, runs the CUDA test and the 0.5B
# throughput benchmark (project trainer vs peft + Trainer), and writes both outputs to DIR.
set -euo pipefail
out="${1:-.}"
mkdir -p "$out"
python3 -m pip install --quiet --no-index --find-links .wheels loguru
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -m pytest tests/training/test_trainer.py -k cuda -q -p no:cacheprovider 2>&1 | tee "$out/cuda_test.txt"
python3 bench/train_throughput.py --preset gpu-0.5b 2>&1 | tee "$out/train_throughput.txt"
