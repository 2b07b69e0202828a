"""`teacher=transformers`: a Hugging Face vision chat model from a local folder, on CPU or GPU.

    python -m curation.run recipe=improving_full teacher=transformers teacher.model_dir=/models/Qwen2.5-VL-3B-Instruct

For small runs and for tests (throughput is vLLM's job). The processor's chat template builds the
prompt from the same templates and pixel budget as the other teachers; `generate` gets every sampling
field of `teacher.sampling` (`Sampling.generate_kwargs`: do_sample, temperature, top_p, top_k, min_p,
repetition_penalty, the rest neutral), so the checkpoint's generation config decides none. Requests
run one at a time on one worker thread (a model is not safe to call from two threads), each with
`torch.manual_seed` of its sample seed so sampled text is reproducible. `check()` loads the weights, so a wrong folder
or a missing package is reported before any work.
"""

from __future__ import annotations

import asyncio
import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping

from curation.backends.base import BackendUnavailable
from curation.backends.teachers.prompting import ChatTeacher, Completion
from curation.core.records import Reject


class TransformersTeacher(ChatTeacher):
    def __init__(self, model_dir: str, *, model_id: str | None = None, revision: str | None = None,
                 device: str = "auto", dtype: str = "auto", concurrency: int = 1,
                 sampling: Mapping[str, Any], max_pixels: int, min_pixels: int, pixel_multiple: int):
        super().__init__(sampling=sampling, max_pixels=max_pixels, min_pixels=min_pixels,
                         pixel_multiple=pixel_multiple)
        if not model_dir:
            raise BackendUnavailable("teacher=transformers needs teacher.model_dir, a local folder with a model "
                                     "(e.g. `hf download Qwen/Qwen2.5-VL-3B-Instruct --local-dir <folder>`)")
        self.model_dir = Path(model_dir).expanduser()
        if not (self.model_dir / "config.json").is_file():
            raise BackendUnavailable(f"teacher.model_dir={model_dir} is not a Hugging Face model folder "
                                     "(no config.json): download one with `hf download "
                                     "Qwen/Qwen2.5-VL-3B-Instruct --local-dir <folder>` "
                                     "and point teacher.model_dir at it")
        self.model_id = model_id or self.model_dir.name
        self.revision = revision or self._fingerprint()
        self.device_setting = device
        self.dtype_setting = dtype
        self.concurrency = int(concurrency)
        self._model = None
        self._processor = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="teacher-transformers")

    def _fingerprint(self) -> str:
        """Which weights: config, generation config and the weight files' names and sizes.

        Hashing the weights themselves would take minutes for a 7B model; this catches a swapped
        model in the same folder. Set `teacher.revision` to pin a real revision instead.
        """
        digest = hashlib.sha256()
        for name in ("config.json", "generation_config.json"):
            path = self.model_dir / name
            if path.is_file():
                digest.update(path.read_bytes())
        for path in sorted(self.model_dir.glob("*.safetensors")) + sorted(self.model_dir.glob("*.bin")):
            digest.update(f"{path.name}:{path.stat().st_size}".encode())
        return "local-" + digest.hexdigest()[:16]

    def model_identity(self) -> tuple[str, str]:
        return self.model_id, self.revision

    def backend_settings(self) -> dict[str, Any]:
        return {"dtype": self.dtype_setting}  # the device does not change results beyond float noise

    # ------------------------------------------------------------------ loading

    def check(self) -> None:
        self._load()

    def _load(self) -> None:
        if self._model is not None:
            return
        try:
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError as exc:
            raise BackendUnavailable(f"teacher=transformers needs torch and transformers ({exc}): "
                                     "pip install 'irgl-curation[models]'") from None
        device = self.device_setting
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = self.dtype_setting
        if dtype == "auto":
            dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32  # CPUs are slow in bf16
        else:
            dtype = getattr(torch, dtype)
        try:
            self._processor = AutoProcessor.from_pretrained(self.model_dir)
            self._model = AutoModelForImageTextToText.from_pretrained(self.model_dir, dtype=dtype).to(device).eval()
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(f"could not load the teacher model from {self.model_dir}: {exc}") from None
        self._device = device
        config = self._model.generation_config
        eos = config.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [eos]) - {None}

    # ------------------------------------------------------------------ one chat

    async def complete(self, system: str, parts: list[tuple[str, Any]], seed: int, stage: str) -> Completion | Reject:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._generate, system, parts, seed)

    def _generate(self, system: str, parts: list[tuple[str, Any]], seed: int) -> Completion:
        import torch

        self._load()  # normally done by check(); here for callers that skip it

        content = [{"type": "text", "text": value} if kind == "text" else {"type": "image", "image": value}
                   for kind, value in parts]
        messages = ([{"role": "system", "content": [{"type": "text", "text": system}]}] if system else []) + \
                   [{"role": "user", "content": content}]
        inputs = self._processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                     return_dict=True, return_tensors="pt").to(self._device)
        s = self.sampling
        torch.manual_seed(seed)  # one request at a time on this thread: the seed alone decides the sample
        with torch.inference_mode():
            # Every field that picks tokens, so the checkpoint's generation_config.json fills none of them
            # (Qwen2.5-VL's top_k 1 would make "sampling" greedy); the same meanings as vLLM's.
            out = self._model.generate(**inputs, **s.generate_kwargs())
        prompt_len = inputs["input_ids"].shape[-1]
        new = out[0, prompt_len:].tolist()
        # Generation stops at EOS or at max_new_tokens; a last token that is not EOS means the limit cut it.
        finish = "stop" if new and new[-1] in self._eos else ("length" if len(new) >= s.max_tokens else "stop")
        text = self._processor.decode(new, skip_special_tokens=True)
        image_token = getattr(self._model.config, "image_token_id", None)
        notes = {"image_tokens": int((inputs["input_ids"] == image_token).sum())} if image_token is not None else {}
        return Completion(text=text, finish_reason=finish, prompt_tokens=int(prompt_len),
                          completion_tokens=len(new), notes=notes)

    async def aclose(self) -> None:
        self._pool.shutdown(wait=True)
        self._model = self._processor = None

