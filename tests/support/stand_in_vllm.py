"""A stand-in for vLLM's asynchronous engine, without vLLM: continuous batching on a step clock.

    engine_class = install(monkeypatch)       # `vllm`, `vllm.v1.engine.async_llm`, ... in sys.modules
    teacher = VllmTeacher(...); teacher.check()
    engine = engine_class.instances[-1]       # what the teacher built: its arguments, its statistics

It has the surface `teacher=vllm` speaks — `AsyncEngineArgs`, `AsyncLLM.from_engine_args`,
`AsyncLLM.generate(prompt, params, request_id)` (an async generator), `shutdown()`, `errored`,
`SamplingParams`, `StructuredOutputsParams`, `RequestOutputKind`, `EngineDeadError`,
`EngineGenerateError`, `VLLMValidationError` — and models *when* work happens the way vLLM's
scheduler does: a request that arrives waits for the next step; at each step the waiting requests
join the running batch while it has fewer than `max_num_seqs`; every running request decodes one
token per step; a request leaves the batch at the step its answer is complete. A step is
`step_s` seconds (0: one pass of the event loop), so tests stay fast and the benchmark can count
steps rather than time.

The answer is a pure function of the prompt, its images and the seed (an IRGL thinking, valid
for both kinds), `answer_tokens` of them; knobs make one request fail the ways vLLM's do:
`refuse` (request validation: a `VLLMValidationError` before the request is admitted),
`fail_generate` (an `EngineGenerateError`), `die_at` (the engine core dies when that many requests
have arrived: every request in flight and every later one gets `EngineDeadError`).
"""

from __future__ import annotations

import asyncio
import collections
import enum
import hashlib
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Callable

SECTIONS = ("### Detailed Explanation of Required Improvements:\nWarm the light and centre the ball.\n"
            "### Step-by-Step Modification Guidance:\n1. Centre the ball. 2. Warm the light.\n"
            "### Final Comprehensive Prompt for the Improved Image:\nA centred red ball in warm light.\n")


class EngineDeadError(Exception):
    """Raised when the engine core dies. Unrecoverable."""


class EngineGenerateError(Exception):
    """Raised when generate() fails. Recoverable."""


class VLLMClientError(Exception):
    """vLLM >= 0.13: the base of every error blamed on the request (not a ValueError)."""


class VLLMValidationError(VLLMClientError):
    def __init__(self, message: str, *, parameter: str | None = None, value: Any = None):
        super().__init__(message)
        self.parameter, self.value = parameter, value


class RequestOutputKind(enum.Enum):
    CUMULATIVE = 0
    DELTA = 1
    FINAL_ONLY = 2


class SamplingParams:
    """As vLLM 0.32's: an unknown keyword is a TypeError (a msgspec Struct), a bad value a VLLMValidationError."""

    FIELDS = frozenset({"n", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty",
                        "frequency_penalty", "seed", "stop", "stop_token_ids", "logprobs", "logit_bias",
                        "structured_outputs", "ignore_eos", "min_tokens", "skip_special_tokens"})

    def __init__(self, *, max_tokens: int = 16, output_kind: RequestOutputKind = RequestOutputKind.CUMULATIVE,
                 **kwargs: Any):
        unknown = sorted(set(kwargs) - self.FIELDS)
        if unknown:
            raise TypeError(f"Unexpected keyword argument {unknown[0]!r}")
        if max_tokens < 1:
            raise VLLMValidationError(f"max_tokens must be at least 1, got {max_tokens}.", parameter="max_tokens")
        if kwargs.get("top_k", 0) < -1:
            raise VLLMValidationError(f"top_k must be 0 (disable), or at least 1, got {kwargs['top_k']}.",
                                      parameter="top_k")
        if kwargs.get("logprobs") is not None and kwargs["logprobs"] < 0:
            raise VLLMValidationError(f"logprobs must be non-negative, got {kwargs['logprobs']}.", parameter="logprobs")
        self.max_tokens, self.output_kind, self.kwargs = max_tokens, output_kind, kwargs


class StructuredOutputsParams:
    def __init__(self, **kwargs: Any):
        self.kwargs = kwargs


class AsyncEngineArgs:
    def __init__(self, **kwargs: Any):
        self.kwargs = kwargs


@dataclass
class CompletionOutput:
    text: str
    token_ids: list[int]
    finish_reason: str


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool = True


def default_answer(text: str, pictures: int, seed: int) -> str:
    """A valid IRGL thinking that names what the engine received (its prompt digest, images, seed)."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    if pictures == 2:
        return (f"<think>\nThe previous image for request {digest} is dim and off-centre; seed {seed}.\n"
                f"{SECTIONS}</think>")
    return (f"<think>\nA red ball in the centre of the frame for request {digest}, soft light from the left, "
            f"plain background, seed {seed}.\n</think>")


@dataclass
class _Running:
    request_id: str
    remaining: int  # tokens still to decode
    output: RequestOutput
    done: asyncio.Future = field(repr=False)
    arrived: int = 0  # the step it arrived at
    admitted: int = -1  # the step it joined the batch
    steps: int = 0  # decode steps it takes


class StandInEngine:
    """`vllm.v1.engine.async_llm.AsyncLLM`, as the teacher uses it."""

    instances: list["StandInEngine"] = []
    # Knobs (set on the class before the teacher builds its engine).
    max_num_seqs_default = 256
    step_s = 0.0
    answer_tokens: Callable[[str, str, int], int] | None = None  # (request id, text, seed) -> decode steps
    refuse: Callable[[str], str | None] = staticmethod(lambda text: None)
    fail_generate: Callable[[str], bool] = staticmethod(lambda text: False)
    die_at: int | None = None

    def __init__(self, args: AsyncEngineArgs):
        self.args = args.kwargs
        self.max_num_seqs = int(self.args.get("max_num_seqs", self.max_num_seqs_default))
        self.errored = False
        self.arrivals = 0
        self.step = 0
        self.busy_slot_steps = 0  # sum over steps of the requests decoding in it
        self.finished: list[_Running] = []
        self._waiting: collections.deque[_Running] = collections.deque()
        self._running: list[_Running] = []
        self._wake: asyncio.Event | None = None
        self._loop_task: asyncio.Task | None = None
        type(self).instances.append(self)

    @classmethod
    def from_engine_args(cls, args: AsyncEngineArgs) -> "StandInEngine":
        return cls(args)

    @property
    def utilisation(self) -> float:
        """Busy slots over all slots of the steps run: 1.0 means every step decoded a full batch."""
        return self.busy_slot_steps / (self.step * self.max_num_seqs) if self.step else 0.0

    async def generate(self, prompt: dict, sampling_params: SamplingParams, request_id: str):
        if self.errored:
            raise EngineDeadError()
        self.arrivals += 1
        if self.die_at is not None and self.arrivals >= self.die_at:
            self._die()
            raise EngineDeadError()
        text = prompt["prompt"]
        problem = self.refuse(text)
        if problem:
            raise VLLMValidationError(problem)
        if self.fail_generate(text):
            raise EngineGenerateError() from RuntimeError("a stand-in failure inside generate")
        pictures = prompt.get("multi_modal_data", {}).get("image", [])
        seed = sampling_params.kwargs["seed"]
        answer = default_answer(text, len(pictures), seed)
        tokens = list(range(len(answer) // 4))
        finish = "stop"
        if len(tokens) > sampling_params.max_tokens:
            answer, tokens, finish = answer[: sampling_params.max_tokens * 4], tokens[: sampling_params.max_tokens], "length"
        steps = self.answer_tokens(request_id, text, seed) if self.answer_tokens else len(tokens)
        output = RequestOutput(request_id, list(range(len(text) // 4 + 64 * len(pictures))),
                               [CompletionOutput(answer, tokens, finish)])
        request = _Running(request_id, max(1, steps), output, asyncio.get_running_loop().create_future(),
                           arrived=self.step, steps=max(1, steps))
        self._waiting.append(request)
        self._ensure_loop()
        self._wake.set()
        yield await request.done

    def _ensure_loop(self) -> None:
        if self._loop_task is None:
            self._wake = asyncio.Event()
            self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="stand-in-engine")

    async def _run(self) -> None:
        while True:
            if not self._waiting and not self._running:
                self._wake.clear()
                await self._wake.wait()
            while self._waiting and len(self._running) < self.max_num_seqs:  # arrivals join the running batch
                request = self._waiting.popleft()
                request.admitted = self.step
                self._running.append(request)
            self.step += 1
            self.busy_slot_steps += len(self._running)
            still = []
            for request in self._running:
                request.remaining -= 1
                if request.remaining > 0:
                    still.append(request)
                elif not request.done.done():
                    self.finished.append(request)
                    request.done.set_result(request.output)
            self._running = still
            await asyncio.sleep(self.step_s)

    def _die(self) -> None:
        self.errored = True
        for request in [*self._running, *self._waiting]:
            if not request.done.done():
                request.done.set_exception(EngineDeadError())
        self._running, self._waiting = [], collections.deque()

    def shutdown(self, timeout: float | None = None) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            self._loop_task = None


class ChatTemplate:
    """A processor stand-in: Qwen's chat format, images as vision placeholders (for the benchmark)."""

    def apply_chat_template(self, messages: list[dict], *, tokenize: bool, add_generation_prompt: bool) -> str:
        out = []
        for message in messages:
            body = "".join(part["text"] if part["type"] == "text" else "<|vision_start|><|image_pad|><|vision_end|>"
                           for part in message["content"])
            out.append(f"<|im_start|>{message['role']}\n{body}<|im_end|>\n")
        return "".join(out) + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def install(monkeypatch=None) -> type[StandInEngine]:
    """Put the stand-in modules where `import vllm...` finds them; returns a fresh engine class."""
    engine_class = type("AsyncLLM", (StandInEngine,), {"instances": []})
    modules = {name: types.ModuleType(name) for name in (
        "vllm", "vllm.engine", "vllm.engine.arg_utils", "vllm.sampling_params", "vllm.exceptions", "vllm.v1",
        "vllm.v1.engine", "vllm.v1.engine.async_llm", "vllm.v1.engine.exceptions")}
    modules["vllm"].__version__ = "0.0-stand-in"
    modules["vllm"].exceptions = modules["vllm.exceptions"]
    modules["vllm.engine.arg_utils"].AsyncEngineArgs = AsyncEngineArgs
    sampling = modules["vllm.sampling_params"]
    sampling.SamplingParams, sampling.StructuredOutputsParams = SamplingParams, StructuredOutputsParams
    sampling.RequestOutputKind = RequestOutputKind
    modules["vllm.exceptions"].VLLMValidationError = VLLMValidationError
    modules["vllm.exceptions"].VLLMClientError = VLLMClientError
    modules["vllm.v1.engine.async_llm"].AsyncLLM = engine_class
    errors = modules["vllm.v1.engine.exceptions"]
    errors.EngineDeadError, errors.EngineGenerateError = EngineDeadError, EngineGenerateError
    for name, module in modules.items():
        if monkeypatch is not None:
            monkeypatch.setitem(sys.modules, name, module)
        else:
            sys.modules[name] = module
    return engine_class
