"""`teacher=vllm`: the vLLM engine in this process, fed in batches (one node, no server).

    python -m curation.run recipe=improving_full teacher=vllm teacher.model=Qwen/Qwen2.5-VL-7B-Instruct

vLLM is an optional extra (`pip install 'irgl-curation[vllm]'`, CUDA only) imported only when this
backend is built; without it, building fails with one sentence naming the fix. `check()` starts
the engine (minutes for a 7B model), so a wrong model name or too little GPU memory is reported
before any work.

The executor hands requests over one at a time (each `async` call is one sample); a batcher
collects the calls that arrive while the engine is busy and hands them to one `LLM.chat` call,
which vLLM schedules with continuous batching. Images go in as PIL images (`image_pil` parts),
already within the pixel budget. Sampling uses `SamplingParams` with the per-sample seed, and
structured output, when configured, the current `structured_outputs=StructuredOutputsParams(...)`
(the `guided_*` parameters were removed in vLLM 0.12). If a batch fails, each request is retried
alone, so one bad request (say, a prompt over `max_model_len`) rejects only its own sample.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Mapping

from curation.backends.base import BackendUnavailable
from curation.backends.teachers.prompting import ChatTeacher, Completion, Sampling
from curation.core.records import Reject

MISSING_VLLM = ("teacher=vllm needs the vllm package, which is not installed here: on a CUDA machine run "
                "`pip install 'irgl-curation[vllm]'`, or start `vllm serve` elsewhere and use teacher=vllm_server")


def import_vllm():
    """The vllm module, or BackendUnavailable with the fix."""
    try:
        import vllm
        import vllm.sampling_params
    except ImportError as exc:
        raise BackendUnavailable(f"{MISSING_VLLM} ({exc})") from None
    if not hasattr(vllm.sampling_params, "StructuredOutputsParams"):  # the API this backend speaks
        raise BackendUnavailable(f"teacher=vllm needs vLLM >= 0.12, found {getattr(vllm, '__version__', '?')}: "
                                 "pip install -U 'irgl-curation[vllm]'")
    return vllm


def build_conversation(system: str, parts: list[tuple[str, Any]]) -> list[dict]:
    """OpenAI-style messages for `LLM.chat`, images as `image_pil` parts (no encoding needed)."""
    content = [{"type": "text", "text": value} if kind == "text" else {"type": "image_pil", "image_pil": value}
               for kind, value in parts]
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]


def sampling_kwargs(sampling: Sampling, seed: int, extra: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for `vllm.SamplingParams` (structured outputs are added by the caller)."""
    return {"temperature": sampling.temperature, "top_p": sampling.top_p, "max_tokens": sampling.max_tokens,
            "seed": seed, **extra}


def parse_output(output: Any) -> Completion:
    """A `Completion` from one `vllm.RequestOutput` (first sample)."""
    sample = output.outputs[0]
    return Completion(text=sample.text, finish_reason=sample.finish_reason,
                      prompt_tokens=len(output.prompt_token_ids or []), completion_tokens=len(sample.token_ids))


@dataclass
class _Pending:
    conversation: list[dict]
    params: Any  # vllm.SamplingParams
    future: asyncio.Future = field(repr=False)
    stage: str = ""


class VllmTeacher(ChatTeacher):
    def __init__(self, model: str, *, revision: str | None = None, engine: Mapping[str, Any] | None = None,
                 concurrency: int = 256, max_batch: int = 256, sampling: Mapping[str, Any],
                 sampling_extra: Mapping[str, Any] | None = None, structured_outputs: Mapping[str, Any] | None = None,
                 max_pixels: int, min_pixels: int, pixel_multiple: int, templates: Mapping[str, str]):
        super().__init__(templates=templates, sampling=sampling, max_pixels=max_pixels, min_pixels=min_pixels,
                         pixel_multiple=pixel_multiple)
        self.vllm = import_vllm()  # only now: building this backend is what needs vLLM
        self.model = model
        self.revision = revision
        self.engine_args = dict(engine or {})
        self.concurrency = int(concurrency)
        self.max_batch = int(max_batch)
        self.sampling_extra = dict(sampling_extra or {})
        self.structured_outputs = dict(structured_outputs) if structured_outputs else None
        self._llm = None
        self._queue: list[_Pending] = []
        self._wake: asyncio.Event | None = None
        self._runner: asyncio.Task | None = None

    def model_identity(self) -> tuple[str, str]:
        return self.model, self.revision or "unpinned"

    def backend_settings(self) -> dict[str, Any]:
        # Engine settings that change the text (dtype, quantization …) are in `engine`; the pixel
        # limits the engine applies follow the pixel budget, which is already in the identity.
        return {"engine": self.engine_args, "sampling_extra": self.sampling_extra,
                "structured_outputs": self.structured_outputs}

    # ------------------------------------------------------------------ engine

    def check(self) -> None:
        self._start_engine()

    def _start_engine(self) -> None:
        if self._llm is not None:
            return
        try:
            self._llm = self.vllm.LLM(model=self.model, revision=self.revision, **self.engine_args)
        except Exception as exc:  # vLLM raises many types (ValueError, RuntimeError, OSError, CUDA errors)
            raise BackendUnavailable(f"vLLM could not start {self.model}: {type(exc).__name__}: {exc}") from None

    def params(self, seed: int) -> Any:
        kwargs = sampling_kwargs(self.sampling, seed, self.sampling_extra)
        if self.structured_outputs:
            from vllm.sampling_params import StructuredOutputsParams

            kwargs["structured_outputs"] = StructuredOutputsParams(**self.structured_outputs)
        return self.vllm.SamplingParams(**kwargs)

    # ------------------------------------------------------------------ one chat, batched

    async def complete(self, system: str, parts: list[tuple[str, Any]], seed: int, stage: str) -> Completion | Reject:
        self._start_engine()  # normally done by check(); a failure here is a broken run, so it raises
        if self._runner is None:
            self._wake = asyncio.Event()
            self._runner = asyncio.create_task(self._run_batches(), name="vllm-teacher-batches")
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(build_conversation(system, parts), self.params(seed), future, stage))
        self._wake.set()
        return await future

    async def _run_batches(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                # Everything that arrived while the engine was busy goes into the next call.
                batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
                await self._run_batch(batch)

    async def _run_batch(self, batch: list[_Pending]) -> None:
        try:
            outputs = await asyncio.to_thread(self._chat, batch)
        except Exception as exc:  # noqa: BLE001 — vLLM raises many types for a request it refuses
            if len(batch) > 1:  # find the request that broke the batch: each one alone
                for pending in batch:
                    await self._run_batch([pending])
                return
            # Transient: an engine hiccup and a refused request look alike here; the next run
            # tries again, and a request that is really too long costs one more refusal.
            outputs = [Reject(batch[0].stage, "engine_error", f"{type(exc).__name__}: {exc}", transient=True)]
        for pending, output in zip(batch, outputs):
            if not pending.future.done():  # a cancelled sample's future is already done
                pending.future.set_result(output if isinstance(output, Reject) else parse_output(output))

    def _chat(self, batch: list[_Pending]) -> list[Any]:
        return self._llm.chat([p.conversation for p in batch], [p.params for p in batch], use_tqdm=False)

    async def aclose(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            self._runner = None
        self._llm = None  # frees the engine (and its GPU memory) once nothing else holds it
