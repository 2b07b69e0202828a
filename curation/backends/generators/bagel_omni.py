"""`generator=bagel_omni`: BAGEL-7B-MoT served by vLLM-Omni, as the base model.

    vllm serve ByteDance-Seed/BAGEL-7B-MoT --omni --port 8000

The request is vLLM-Omni's text-to-image chat call: `POST {base_url}/chat/completions` with one
user message whose text part is the prompt wrapped in BAGEL's turn markers
(`<|im_start|>…<|im_end|>`), `"modalities": ["image"]`, and `height`, `width`,
`num_inference_steps`, `seed` and BAGEL's guidance settings as top-level fields. The image comes
back as a data URI in the message content (`{"type": "image_url", "image_url": {"url": …}}`).

Where the seed must go (read from vLLM-Omni 0.30's code): BAGEL is served as two stages
(`vllm_omni/deploy/bagel.yaml`): stage 0, the thinker, prefills the prompt and hands its KV cache
to stage 1, the DiT, which draws. On `/v1/chat/completions` the top-level sampling fields (`seed`
among them) are applied to stage 0 only (`_build_sampling_params_list_from_request`); the DiT gets
a copy of its deploy defaults, whose `seed` is 52, and the override loop copies size, steps and
the guidance fields onto it but not the seed. So without more, every image starts from the same
noise. A request-level `sampling_params_list` (one dict per stage) replaces those per-stage
defaults (`_to_sampling_params_list`), and the DiT reads `sampling.seed` from its entry
(`BagelPipeline`), so this backend sends the sample's seed there, for both stages, with the
thinker's sampling settings restated (a per-stage list replaces the deploy's stage-0 defaults
rather than merging with them: `generator.thinker_sampling`). The top-level `seed` stays, for a
single-stage deployment (`bagel_single_stage.yaml`), which reads it from there.

BAGEL's guidance settings are the same as in-process BAGEL's (`recipes/bagel/text_to_image.yaml`,
`bagel_guidance.py`), and every one is sent explicitly, so the server's own defaults never decide
(its BAGEL pipeline defaults `cfg_img_scale` to 1.5, the checkout's text-to-image example uses
1.0). In 0.30 they are fields BAGEL's extras declare (`model_extras/bagel.py`), so the chat route
moves the top-level ones into the DiT's `extra_args`, where `BagelPipeline` reads all six:
`cfg_text_scale`, `cfg_img_scale`, `cfg_interval`, `cfg_renorm_type`, `cfg_renorm_min` and
`timestep_shift` (no longer fixed at 3.0 there). They are also put in the DiT's own entry of
`sampling_params_list` (its `extra_args` and `num_inference_steps`), so the stage that draws is
told every setting directly. What was sent for the seed is recorded in each image's lineage.
Retries, time-outs and rejects are those of every HTTP image backend (`images_api.py`).
"""

from __future__ import annotations

from typing import Any, Mapping

from curation.backends.base import BackendUnavailable, GenerateRequest
from curation.backends.generators.bagel_guidance import BagelGuidance
from curation.backends.generators.images_api import HttpImageGenerator
from curation.core.records import Reject


class BagelOmniGenerator(HttpImageGenerator):
    path = "/chat/completions"
    serve_hint = "vllm serve ByteDance-Seed/BAGEL-7B-MoT --omni"
    group = "generator"

    def __init__(self, base_url: str, guidance: Mapping[str, Any] | None = None, negative_prompt: str | None = None,
                 prompt_template: str = "<|im_start|>{prompt}<|im_end|>",
                 thinker_sampling: Mapping[str, Any] | None = None, **kwargs: Any):
        self.guidance = BagelGuidance.from_config(guidance)  # refused before anything else is set up
        super().__init__(base_url, **kwargs)
        self.negative_prompt = negative_prompt
        if "{prompt}" not in prompt_template:
            raise BackendUnavailable(f"generator.prompt_template={prompt_template!r} has no {{prompt}} placeholder")
        self.prompt_template = prompt_template
        self.thinker_sampling = dict(thinker_sampling or {})
        if "seed" in self.thinker_sampling:
            raise BackendUnavailable("generator.thinker_sampling.seed is set by the backend (each sample's own seed): "
                                     "remove it")

    def guidance_fields(self) -> dict[str, Any]:
        """BAGEL's guidance settings as vLLM-Omni's request fields (its step count is num_inference_steps)."""
        fields = self.guidance.as_dict()
        fields["num_inference_steps"] = fields.pop("num_timesteps")
        return fields

    def settings(self) -> dict[str, Any]:
        # The same names as in-process BAGEL's identity, so the two can be compared key by key.
        # `seed_to` names where the seed goes: images cached before it was sent to the DiT (all
        # drawn with the deploy's seed 52) must not be reused.
        settings = {"width": self.width, "height": self.height, "prompt_template": self.prompt_template,
                    **self.guidance.as_dict(), "thinker_sampling": self.thinker_sampling,
                    "seed_to": "every_stage"}
        if self.negative_prompt is not None:
            settings["negative_prompt"] = self.negative_prompt
        return settings

    def stage_params(self, seed: int) -> list[dict[str, Any]]:
        """`sampling_params_list`: the thinker's, then the DiT's, each with the sample's seed."""
        fields = self.guidance_fields()
        steps = fields.pop("num_inference_steps")
        return [{**self.thinker_sampling, "seed": seed},
                {"seed": seed, "num_inference_steps": steps, "extra_args": fields}]

    def payload(self, request: GenerateRequest) -> dict[str, Any]:
        text = self.prompt_template.replace("{prompt}", request.prompt)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
            "modalities": ["image"],
            "height": request.height,
            "width": request.width,
            "seed": request.seed,  # read by a single-stage deployment; two stages read the list below
            **self.guidance_fields(),
            "sampling_params_list": self.stage_params(request.seed),
        }
        if self.negative_prompt is not None:
            body["negative_prompt"] = self.negative_prompt
        return body

    def sent_lineage(self, request: GenerateRequest) -> dict[str, Any]:
        # Where the seed was sent: the request's top level and each stage's entry (thinker, DiT).
        return {"seed": request.seed, "stage_seeds": [p["seed"] for p in self.stage_params(request.seed)]}

    def image_from(self, response: dict[str, Any]) -> bytes | Reject:
        """The first data-URI image in any choice (a server may put text and image in separate choices)."""
        for i, choice in enumerate(response.get("choices") or []):
            content = (choice.get("message") or {}).get("content") if isinstance(choice, dict) else None
            parts = [content] if isinstance(content, str) else content if isinstance(content, list) else []
            for part in parts:
                url = part if isinstance(part, str) else ((part.get("image_url") or {}).get("url")
                                                          if isinstance(part, dict) else None)
                if isinstance(url, str) and url.startswith("data:image"):
                    header, _, encoded = url.partition(",")
                    if not header.endswith(";base64"):
                        return Reject(self.role, "bad_image_data", f"choice {i}: the data URI is not base64")
                    return self.decode_base64(encoded, f"choices[{i}] image data URI")
        return Reject(self.role, "no_image", "no choice of the response holds a data:image URI")
