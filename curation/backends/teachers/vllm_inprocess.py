"""`teacher=vllm`: vLLM's asynchronous engine in this process (one node, no server).

    python -m curation.run recipe=improving_full teacher=vllm teacher.model=Qwen/Qwen2.5-VL-7B-Instruct

vLLM is an optional extra (`pip install 'irgl-curation[vllm]'`, CUDA only) imported only when this
backend is built; without it, building fails with one sentence naming the fix. `check()` starts
the engine (minutes for a 7B model), so a wrong model name or too little GPU memory is reported
before any work.

Continuous batching: each thinking is one `AsyncLLM.generate(prompt, params, request_id)` call,
an async generator that vLLM's scheduler admits into the running batch at its next step, however
many requests are already decoding, and that ends when this request's answer does. A request that
finishes leaves its slot to the next arrival at once; nothing waits for the longest answer of a
batch (`benchmarks/vllm_batching.py` measures the difference against the lock-step way on a
stand-in engine). The executor keeps `teacher.concurrency` requests in flight; the engine runs up
to `teacher.engine.max_num_seqs` of them at a time.

The prompt is the model's own chat template, rendered by its processor (`AutoProcessor`, as
vLLM's examples do for Qwen2.5-VL), with the images passed as PIL images in `multi_modal_data`,
already within the pixel budget. Sampling uses `SamplingParams` with the per-sample seed, only the
final output (`RequestOutputKind.FINAL_ONLY`), and structured output, when configured, the current
`structured_outputs=StructuredOutputsParams(...)` (the `guided_*` parameters were removed in 0.12).

Failures, one behaviour per class (docs/teacher.md):
- `EngineDeadError` (the engine core died: a CUDA error, a crashed worker): `BackendFailed`, the run
  stops; nothing is stored for the request, and the same command resumes once the cause is fixed.
- a request the engine refuses (`vllm.exceptions.VLLMValidationError`, vLLM >= 0.13; since then
  it is a `VLLMClientError`, not a `ValueError`, and `generate` re-raises it as it is): judged as
  the server teacher judges an unexplained 400 (`refusals.RefusalJudge`): once a request of this
  run has been answered it is the sample's kept reject, and when every request in flight has been
  refused with none answered (a context too small for any prompt, a structured-output regex the
  engine cannot compile) the run stops. The reason is measured: the prompt's tokens by the model's
  processor (images expanded) against the engine's `max_model_len` — over it `request_too_long`,
  else `request_refused`, quoting the engine. Any other `VLLMClientError` (a LoRA that is not
  there) stops the run.
- `EngineGenerateError` (vLLM's "unexpected error in generate, recoverable"): a transient
  `engine_error` reject, tried again by the next run.
Sampling settings are turned into `SamplingParams` once in `check()` — every field of
`teacher.sampling` set, so the checkpoint's generation config fills none — and a bad value or an
unknown `sampling_extra` field is one sentence before any work rather than a refusal of every request.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Mapping

from curation.backends.base import BackendFailed, BackendUnavailable
from curation.backends.teachers.prompting import ChatTeacher, Completion, Sampling
from curation.backends.teachers.refusals import RefusalJudge
from curation.core.records import Reject

MISSING_VLLM = ("teacher=vllm needs the vllm package, which is not installed here: on a CUDA machine run "
                "`pip install 'irgl-curation[vllm]'`, or start `vllm serve` elsewhere and use teacher=vllm_server")


#: AsyncEngineArgs that size memory and nothing the engine computes.
MEMORY_ONLY_ENGINE_ARGS = frozenset({"gpu_memory_utilization", "kv_cache_memory_bytes", "swap_space", "cpu_offload_gb"})


@dataclass(frozen=True)
class VllmApi:
    """The parts of vLLM this backend speaks, found once at build time."""

    AsyncLLM: Any  # vllm.v1.engine.async_llm.AsyncLLM
    AsyncEngineArgs: Any
    SamplingParams: Any
    StructuredOutputsParams: Any
    FINAL_ONLY: Any  # RequestOutputKind.FINAL_ONLY
    engine_dead: type[BaseException]  # EngineDeadError
    generate_failed: type[BaseException]  # EngineGenerateError
    invalid: type[BaseException]  # VLLMValidationError: a request (or sampling value) vLLM will not take
    client_error: type[BaseException]  # VLLMClientError, its base: every error vLLM blames on the caller
    version: str


def import_vllm() -> VllmApi:
    """vLLM's asynchronous engine API, or BackendUnavailable with the fix."""
    try:
        import vllm
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.sampling_params import RequestOutputKind, SamplingParams
        from vllm.v1.engine.async_llm import AsyncLLM
        from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError
    except ImportError as exc:
        raise BackendUnavailable(f"{MISSING_VLLM} ({exc})") from None
    version = getattr(vllm, "__version__", "?")
    try:  # the API this backend speaks: structured outputs (0.12) and typed request errors (0.13)
        from vllm.exceptions import VLLMClientError, VLLMValidationError
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError:
        raise BackendUnavailable(f"teacher=vllm needs vLLM >= 0.13, found {version}: "
                                 "pip install -U 'irgl-curation[vllm]'") from None
    return VllmApi(AsyncLLM=AsyncLLM, AsyncEngineArgs=AsyncEngineArgs, SamplingParams=SamplingParams,
                   StructuredOutputsParams=StructuredOutputsParams, FINAL_ONLY=RequestOutputKind.FINAL_ONLY,
                   engine_dead=EngineDeadError, generate_failed=EngineGenerateError, invalid=VLLMValidationError,
                   client_error=VLLMClientError, version=version)


def load_processor(model: str, revision: str | None) -> Any:
    """The model's processor, for its chat template (vLLM has already fetched the files)."""
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(model, revision=revision)


def build_conversation(system: str, parts: list[tuple[str, Any]]) -> tuple[list[dict], list[Any]]:
    """Chat messages for the processor's template (images as placeholders) and the images, in order."""
    content, pictures = [], []
    for kind, value in parts:
        if kind == "text":
            content.append({"type": "text", "text": value})
        else:
            content.append({"type": "image"})
            pictures.append(value)
    messages = ([{"role": "system", "content": [{"type": "text", "text": system}]}] if system else []) + \
               [{"role": "user", "content": content}]
    return messages, pictures


def sampling_kwargs(sampling: Sampling, seed: int, extra: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for `vllm.SamplingParams` (structured outputs and output kind are added by the caller):
    every field of `teacher.sampling`, as the server teacher sends them (`Sampling.vllm_fields`)."""
    return {**sampling.vllm_fields(), "seed": seed, **extra}


def parse_output(output: Any) -> Completion:
    """A `Completion` from one final `vllm.RequestOutput` (first sample)."""
    sample = output.outputs[0]
    return Completion(text=sample.text, finish_reason=sample.finish_reason,
                      prompt_tokens=len(output.prompt_token_ids or []), completion_tokens=len(sample.token_ids))


class VllmTeacher(ChatTeacher):
    def __init__(self, model: str, *, revision: str | None = None, engine: Mapping[str, Any] | None = None,
                 concurrency: int = 256, sampling: Mapping[str, Any],
                 sampling_extra: Mapping[str, Any] | None = None, structured_outputs: Mapping[str, Any] | None = None,
                 max_pixels: int, min_pixels: int, pixel_multiple: int):
        super().__init__(sampling=sampling, max_pixels=max_pixels, min_pixels=min_pixels,
                         pixel_multiple=pixel_multiple)
        self.vllm = import_vllm()  # only now: building this backend is what needs vLLM
        self.model = model
        self.revision = revision
        self.engine_args = dict(engine or {})
        self.concurrency = int(concurrency)
        self.sampling_extra = dict(sampling_extra or {})
        self.sampling.refuse_overrides(self.sampling_extra, "teacher.sampling_extra")
        self.structured_outputs = dict(structured_outputs) if structured_outputs else None
        self._engine = None
        self._processor = None
        self._request_ids = itertools.count()
        self.refusals = RefusalJudge()  # whose fault a refusal is: what else of the run was answered

    def model_identity(self) -> tuple[str, str]:
        return self.model, self.revision or "unpinned"

    def backend_settings(self) -> dict[str, Any]:
        # Engine settings that change the text (dtype, quantization …) are in `engine`; the pixel
        # limits the engine applies follow the pixel budget, which is already in the identity. How
        # much GPU memory the engine may take only sizes its KV cache, and the GPU memory plan sets it
        # per machine (backends/memory_plan.py): in the key it would re-pay every cached answer when
        # the same run moves to a GPU of another size.
        engine = {k: v for k, v in self.engine_args.items() if k not in MEMORY_ONLY_ENGINE_ARGS}
        return {"engine": engine, "sampling_extra": self.sampling_extra, "structured_outputs": self.structured_outputs}

    # ------------------------------------------------------------------ engine

    def check(self) -> None:
        try:
            self.params(seed=0)  # a bad sampling value fails here, once, not on every request
        except (TypeError, ValueError, self.vllm.client_error) as exc:
            # TypeError: a sampling_extra field SamplingParams does not have; ValueError or
            # VLLMValidationError (not a ValueError since 0.13): a value it refuses.
            raise BackendUnavailable(f"teacher=vllm: vLLM refuses the sampling settings (teacher.sampling, "
                                     f"teacher.sampling_extra, teacher.structured_outputs): "
                                     f"{type(exc).__name__}: {' '.join(str(exc).split())}") from None
        self._start_engine()

    def _start_engine(self) -> None:
        if self._engine is not None:
            return
        try:
            args = self.vllm.AsyncEngineArgs(model=self.model, revision=self.revision, **self.engine_args)
            self._engine = self.vllm.AsyncLLM.from_engine_args(args)
            if self._processor is None:
                self._processor = load_processor(self.model, self.revision)
        except Exception as exc:  # vLLM raises many types (ValueError, RuntimeError, OSError, CUDA errors)
            raise BackendUnavailable(f"vLLM could not start {self.model}: {type(exc).__name__}: {exc}") from None

    def params(self, seed: int) -> Any:
        kwargs = sampling_kwargs(self.sampling, seed, self.sampling_extra)
        if self.structured_outputs:
            kwargs["structured_outputs"] = self.vllm.StructuredOutputsParams(**self.structured_outputs)
        # Only the finished answer: per-token outputs would cost Python work on every decode step.
        return self.vllm.SamplingParams(output_kind=self.vllm.FINAL_ONLY, **kwargs)

    def prompt(self, system: str, parts: list[tuple[str, Any]]) -> dict[str, Any]:
        """The engine prompt: the chat template's text and the images it shows, in order."""
        messages, pictures = build_conversation(system, parts)
        text = self._processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return {"prompt": text, "multi_modal_data": {"image": pictures}} if pictures else {"prompt": text}

    # ------------------------------------------------------------------ one chat, continuously batched

    async def complete(self, system: str, parts: list[tuple[str, Any]], seed: int, stage: str) -> Completion | Reject:
        self._start_engine()  # normally done by check(); a failure here is a broken run, so it raises
        request_id = f"{stage}-{next(self._request_ids)}"
        prompt, params = self.prompt(system, parts), self.params(seed)  # our own errors stay errors
        with self.refusals.request():
            return await self._generate(prompt, params, request_id, stage)

    async def _generate(self, prompt: dict[str, Any], params: Any, request_id: str, stage: str) -> Completion | Reject:
        final = None
        try:
            async for output in self._engine.generate(prompt, params, request_id):
                final = output  # FINAL_ONLY: one output, the finished answer
        except self.vllm.engine_dead as exc:
            raise BackendFailed(f"the vLLM engine running {self.model} died ({type(exc).__name__}: {exc}): the run "
                                "stops; finished results are kept, and the same command resumes once the cause "
                                "(GPU memory, driver, a crashed worker) is fixed") from exc
        except self.vllm.invalid as exc:  # this request's prompt or images, or every request alike: judged
            return await self._judge(exc, prompt, stage)
        except self.vllm.client_error as exc:  # refused for what the run asks (a LoRA that is not there)
            raise BackendFailed(f"vLLM refused a request of {self.model}: {type(exc).__name__}: "
                                f"{' '.join(str(exc).split())}; every request would be refused alike, so the run "
                                "stops: fix the setting and run the same command again") from exc
        except self.vllm.generate_failed as exc:
            cause = exc.__cause__ or exc
            return Reject(stage, "engine_error", f"{type(cause).__name__}: {cause}", transient=True)
        if final is None or not final.outputs:
            return Reject(stage, "engine_error", "the engine ended the request without an answer", transient=True)
        self.refusals.answer()
        return parse_output(final)

    async def _judge(self, exc: BaseException, prompt: dict[str, Any], stage: str) -> Reject:
        """This sample's reject, or the run stops (see the module docstring); measured, never read from the message."""
        detail = f"vLLM refused the request: {type(exc).__name__}: {' '.join(str(exc).split())}"
        size, limit = self.measure_prompt(prompt), self.context_length()
        measured = f"; the prompt is {size} tokens, max_model_len {limit}" if size is not None and limit else ""
        if not await self.refusals.samples_own():
            raise BackendFailed(f"{detail}{measured}; every request of this run so far was refused and none answered, "
                                "so the engine would refuse them all: the run stops (nothing was stored); raise "
                                "teacher.engine.max_model_len, lower teacher.max_pixels, or fix the setting, and run "
                                "the same command again") from exc
        if size is not None and limit is not None and size >= limit:
            return Reject(stage, "request_too_long", detail + measured)
        return Reject(stage, "request_refused", detail + measured)

    def measure_prompt(self, prompt: dict[str, Any]) -> int | None:
        """The prompt's length in tokens as the engine counts it: the processor expands each image to its tokens."""
        try:
            images = prompt.get("multi_modal_data", {}).get("image") or None
            encoded = self._processor(text=[prompt["prompt"]], images=images, return_tensors="np")
        except Exception:  # noqa: BLE001 — an image the processor cannot take: unmeasured, judged on the rest
            return None
        return int(encoded["input_ids"].shape[-1])

    def context_length(self) -> int | None:
        """The engine's context length (what it decided, else what the config asked for)."""
        limit = getattr(getattr(self._engine, "model_config", None), "max_model_len", None)
        limit = limit if isinstance(limit, int) else self.engine_args.get("max_model_len")
        return int(limit) if limit is not None else None

    async def aclose(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()  # stops the engine core process and frees its GPU memory
            self._engine = None
