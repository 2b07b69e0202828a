"""What every model teacher shares: image budgets, the chat flow, the accounting.

A teacher backend (`vllm_server`, `vllm`, `transformers`) only says how to run one chat — how an
image goes into a message and how a completion comes back. Everything else lives here, once:

- rendering the template a request carries (the stage that sends it owns the template and keys its
  results by it: the teacher's identity holds no prompt, so editing one prompt re-keys one stage);
- the image budget: Qwen2.5-VL spends about one token per 28×28 pixels, so every image is resized
  to at most `max_pixels`, with sides on the 28-pixel grid (the server then has nothing to resize);
- the accounting over the run (calls, tokens, seconds), for `summary()` and so the manifest — never
  in a row's lineage, which holds only what determines the text, so that two runs against the same
  deterministic server write the same bytes.
"""

from __future__ import annotations

import asyncio
import io
import math
import time
from abc import abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from PIL import Image

from curation.backends.base import BackendUnavailable, ChatRequest, ImageInput, Teacher, TeacherOutput
from curation.core.records import Reject
from curation.core.thinking_checks import TeacherText

# Up to 256² an image is resized and encoded in ~0.3 ms of CPU, about what handing it to a worker
# thread costs (measured ~0.17 ms per hop on 2 cores): small images stay on the event loop.
INLINE_MAX_PIXELS = 256 * 256


# ----------------------------------------------------------------------------- images


@dataclass(frozen=True)
class ImageBudget:
    """How large images go to the teacher: at most `max_pixels`, sides multiples of `multiple`."""

    max_pixels: int = 401_408  # 512 tokens of 28×28 for Qwen2.5-VL
    min_pixels: int = 3_136  # 4 tokens
    multiple: int = 28  # 14-pixel patches merged 2×2

    def __post_init__(self):
        if not self.multiple ** 2 <= self.min_pixels <= self.max_pixels:
            raise BackendUnavailable(f"the teacher's pixel budget needs pixel_multiple² <= min_pixels <= max_pixels; "
                                     f"got {asdict(self)}")


@dataclass(frozen=True)
class ImageEncoding:
    """How images go to a server (in-process teachers take PIL images as they are).

    An image that is already what the model should see — within the budget, on the grid, plain
    RGB, in a format servers decode — is sent as stored when `keep_stored` is on: no decode, no
    lossy re-encode. Any other image is resized to the budget and encoded in `format`.
    """

    format: str = "jpeg"  # JPEG encodes ~20× faster than PNG and is what photos are anyway
    jpeg_quality: int = 90
    keep_stored: bool = True

    def __post_init__(self):
        if self.format not in ("jpeg", "png"):
            raise BackendUnavailable(f"teacher image format {self.format!r}: use jpeg or png")


def fitted_size(width: int, height: int, budget: ImageBudget) -> tuple[int, int]:
    """The size Qwen2.5-VL's own resizing would pick: on the grid, same aspect, within the budget.

    `max_pixels` is a hard cap (it bounds the tokens paid per image); `min_pixels` is met
    whenever the cap leaves room for it.
    """
    m = budget.multiple
    w, h = max(m, round(width / m) * m), max(m, round(height / m) * m)
    if w * h > budget.max_pixels:
        scale = math.sqrt(width * height / budget.max_pixels)
        w, h = max(m, math.floor(width / scale / m) * m), max(m, math.floor(height / scale / m) * m)
    elif w * h < budget.min_pixels:
        scale = math.sqrt(budget.min_pixels / (width * height))
        w, h = math.ceil(width * scale / m) * m, math.ceil(height * scale / m) * m
    while w * h > budget.max_pixels:  # a side held at one cell (extreme aspect) or rounded up
        if w >= h:
            w -= m
        else:
            h -= m
    return w, h


def fit_image(image: Image.Image, budget: ImageBudget) -> Image.Image:
    image = image if image.mode == "RGB" else image.convert("RGB")
    size = fitted_size(image.width, image.height, budget)
    return image if size == image.size else image.resize(size, Image.Resampling.BICUBIC)


def encode_image(image: Image.Image, encoding: ImageEncoding) -> bytes:
    buf = io.BytesIO()
    if encoding.format == "jpeg":
        image.save(buf, format="JPEG", quality=encoding.jpeg_quality)
    else:
        image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


# ----------------------------------------------------------------------------- sampling and results


@dataclass(frozen=True)
class Sampling:
    """Every sampling field that changes an answer, with one meaning for every model teacher.

    No field may be left out of a request: vLLM (server and engine) and transformers' `generate`
    fill each omitted field from the checkpoint's `generation_config.json`, and Qwen2.5-VL's says
    `top_k: 1, repetition_penalty: 1.05` — greedy decoding behind a request that asked for
    temperature 0.7. So there are no defaults here: the values come from `recipes/teacher/sampling/`
    (stated once), and each backend sends all of them (`vllm_fields`, `generate_kwargs`).

    Meanings (as vLLM defines them; transformers' `generate` is given the same):
    temperature 0 = greedy; top_k 0 = no top-k cut; top_p 1 and min_p 0 = no nucleus / min-p cut;
    repetition_penalty 1 = none. vLLM's presence and frequency penalties have no counterpart in
    `generate`, so they are not offered: vLLM teachers send them as 0 (off), which is also what
    transformers does.
    """

    temperature: float
    top_p: float
    top_k: int
    min_p: float
    repetition_penalty: float
    max_tokens: int

    FIELDS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_tokens")

    def __post_init__(self):
        # Checked here, before any request: a server would refuse every request alike.
        numbers = {name: getattr(self, name) for name in self.FIELDS}
        wrong_type = [f"{name}={value!r}" for name, value in numbers.items()
                      if isinstance(value, bool) or not isinstance(value, (int, float))
                      or (name in ("top_k", "max_tokens") and not float(value).is_integer())]
        if wrong_type:
            raise BackendUnavailable(f"teacher.sampling needs numbers (top_k and max_tokens whole numbers); "
                                     f"got {', '.join(wrong_type)}")
        if not (0 <= self.temperature <= 2 and 0 < self.top_p <= 1 and self.top_k >= 0 and 0 <= self.min_p < 1
                and self.repetition_penalty > 0 and self.max_tokens >= 1):
            raise BackendUnavailable("teacher.sampling needs 0 <= temperature <= 2, 0 < top_p <= 1, top_k >= 0 "
                                     "(0: off), 0 <= min_p < 1, repetition_penalty > 0 and max_tokens >= 1; "
                                     f"got {numbers}")
        object.__setattr__(self, "top_k", int(self.top_k))
        object.__setattr__(self, "max_tokens", int(self.max_tokens))
        for name in ("temperature", "top_p", "min_p", "repetition_penalty"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @classmethod
    def from_config(cls, values: Mapping[str, Any]) -> "Sampling":
        """From `teacher.sampling`; a missing or unknown field is one sentence naming it."""
        given = set(values)
        missing, unknown = [f for f in cls.FIELDS if f not in given], sorted(given - set(cls.FIELDS))
        if missing or unknown:
            raise BackendUnavailable(
                f"teacher.sampling must set exactly {list(cls.FIELDS)}"
                + (f"; missing {missing}" if missing else "") + (f"; unknown {unknown}" if unknown else "")
                + " (defaults: recipes/teacher/sampling/default.yaml)")
        return cls(**{f: values[f] for f in cls.FIELDS})

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def vllm_fields(self) -> dict[str, Any]:
        """Every field vLLM would otherwise fill from the checkpoint (`ModelConfig.get_diff_sampling_param`:
        repetition, presence and frequency penalty, temperature, top_k, top_p, min_p, max_new_tokens),
        for the OpenAI body of `vllm serve` and for `vllm.SamplingParams` alike."""
        return {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k, "min_p": self.min_p,
                "repetition_penalty": self.repetition_penalty, "presence_penalty": 0.0, "frequency_penalty": 0.0,
                "max_tokens": self.max_tokens}

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for transformers' `generate` (and `transformers serve`'s `generation_config`).

        `generate` copies the checkpoint's generation config and fills every field that is unset
        (None) from it; a keyword argument overrides it. So every field that changes which token is
        picked is given here, the ones IRGL does not use at their neutral value: beams, typical-p,
        epsilon/eta cut-offs, n-gram bans and suppressed tokens of a checkpoint cannot creep in.
        """
        sample = not self.greedy
        return {"do_sample": sample, "max_new_tokens": self.max_tokens, "min_new_tokens": 0,
                # Greedy: the warpers are not applied (as in vLLM at temperature 0); neutral values keep
                # transformers from warning about sampling fields set with do_sample=False.
                "temperature": self.temperature if sample else 1.0, "top_p": self.top_p if sample else 1.0,
                "top_k": self.top_k if sample else 0, "min_p": self.min_p if sample and self.min_p > 0 else None,
                "repetition_penalty": self.repetition_penalty,
                "num_beams": 1, "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
                "no_repeat_ngram_size": 0, "encoder_repetition_penalty": 1.0, "bad_words_ids": None,
                "suppress_tokens": None, "begin_suppress_tokens": None, "sequence_bias": None,
                "forced_bos_token_id": None, "forced_eos_token_id": None,
                "exponential_decay_length_penalty": None, "renormalize_logits": False}

    def refuse_overrides(self, extra: Mapping[str, Any], knob: str) -> None:
        """A backend's free-form extras (`extra_body`, `sampling_extra`) may not set a sampling field
        behind `teacher.sampling`'s back: it would change the text without changing the identity's
        meaning of that field. One sentence at start-up."""
        clash = sorted(set(extra) & (set(self.vllm_fields()) | {"max_completion_tokens", "seed", "n"}))
        if clash:
            raise BackendUnavailable(f"{knob} sets {clash}: set sampling fields in teacher.sampling "
                                     f"({', '.join(self.FIELDS)}); the seed is per sample and one answer is asked")


@dataclass
class Completion:
    """One chat completion, as every backend reports it."""

    text: str
    finish_reason: str | None
    prompt_tokens: int | None = None  # accounting only (summary), not lineage
    completion_tokens: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)  # backend-specific lineage: what the model saw (image sizes …)


# ----------------------------------------------------------------------------- the shared flow


class ChatTeacher(Teacher):
    """A teacher that answers every request with one chat rendered from the request's template."""

    def __init__(self, *, sampling: Mapping[str, Any], max_pixels: int, min_pixels: int, pixel_multiple: int):
        self.sampling = Sampling.from_config(sampling)
        self.budget = ImageBudget(max_pixels=int(max_pixels), min_pixels=int(min_pixels), multiple=int(pixel_multiple))
        # Accounting over the run (`summary()`), printed when the backend closes.
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._first_call: float | None = None
        self._last_done = 0.0

    # What a subclass provides ------------------------------------------------------------

    @abstractmethod
    def model_identity(self) -> tuple[str, str]:
        """`(model id, revision)` for lineage and keys."""

    def backend_settings(self) -> dict[str, Any]:
        """Backend-specific settings that change results (added to the identity)."""
        return {}

    async def prepare_image(self, image: ImageInput) -> Any:
        """An image as `complete` wants it. Default: a PIL image within the budget."""
        if image.ref.width * image.ref.height <= INLINE_MAX_PIXELS:
            return fit_image(image.pil(), self.budget)
        # Decoding and resizing a large image take milliseconds and release the GIL: off the loop.
        return await asyncio.to_thread(lambda: fit_image(image.pil(), self.budget))

    @abstractmethod
    async def complete(self, system: str, parts: list[tuple[str, Any]], seed: int, stage: str) -> Completion | Reject:
        """Run one chat. `parts` are ("text", str) and ("image", whatever `prepare_image` made)."""

    # The Teacher interface ----------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        model, revision = self.model_identity()
        return {"id": model, "revision": revision, "settings": {
            "sampling": asdict(self.sampling), "pixels": asdict(self.budget), **self.backend_settings()}}

    async def chat(self, request: ChatRequest) -> TeacherOutput | Reject:
        self._first_call = self._first_call or time.perf_counter()
        # Each image is prepared (resized, encoded) once per request, however often the request is retried.
        prepared = {name: await self.prepare_image(image) for name, image in request.images.items()}
        parts = [(kind, prepared[value] if kind == "image" else value)
                 for kind, value in request.template.render(request.values)]
        # The template's name labels the request (vLLM request ids, a reject's stage until the stage stamps its own).
        result = await self.complete(request.template.system, parts, request.seed, request.template.name)
        self._last_done = time.perf_counter()
        self.calls += 1
        if isinstance(result, Reject):
            return result
        self.prompt_tokens += result.prompt_tokens or 0
        self.completion_tokens += result.completion_tokens or 0
        # Only what determines the text: two runs against the same deterministic server must write
        # the same bytes, so latency, attempts and tokens stay in `summary()`.
        lineage = {"finish_reason": result.finish_reason, **result.notes}
        return TeacherOutput(text=TeacherText(result.text, result.finish_reason), lineage=lineage)

    def summary(self) -> dict[str, Any]:
        """Per-run accounting: calls, tokens, and throughput over the time the teacher was in use."""
        wall = (self._last_done - self._first_call) if self._first_call else 0.0
        return {"calls": self.calls, "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "wall_s": round(wall, 3),
                "completion_tokens_per_s": round(self.completion_tokens / wall, 2) if wall > 0 else None,
                "calls_per_teacher_hour": round(self.calls * 3600 / wall, 1) if wall > 0 else None,
                **self.backend_summary()}

    def backend_summary(self) -> dict[str, Any]:
        """More per-run accounting of a subclass (a server teacher: its HTTP attempts and retries)."""
        return {}
