"""`generator=bagel_omni`: BAGEL-7B-MoT served by vLLM-Omni, as the base model.

    vllm serve ByteDance-Seed/BAGEL-7B-MoT --omni --port 8000

The request is vLLM-Omni's documented text-to-image chat call: `POST {base_url}/chat/completions`
with one user message whose text part is the prompt wrapped in BAGEL's turn markers
(`<|im_start|>…<|im_end|>`), `"modalities": ["image"]`, and `height`, `width`,
`num_inference_steps`, `seed` as top-level fields. The image comes back as a data URI in the
message content (`{"type": "image_url", "image_url": {"url": "data:image/png;base64,…"}}`).

BAGEL's guidance settings are the same as in-process BAGEL's (`recipes/bagel/text_to_image.yaml`,
`bagel_guidance.py`), and every one is sent as a top-level field, explicitly, so the server's own
defaults never decide (its BAGEL pipeline defaults `cfg_img_scale` to 1.5, the checkout's
text-to-image example uses 1.0): `cfg_text_scale`, `cfg_img_scale`, `cfg_interval`,
`cfg_renorm_type`, `cfg_renorm_min`, `timestep_shift`, and the step count as vLLM-Omni's
`num_inference_steps`. vLLM-Omni's chat route copies `cfg_text_scale` and `cfg_img_scale` into the
diffusion stage's `extra_args`, and the other fields its pipeline declares; read against its code
(BagelPipeline.forward), the pipeline takes `cfg_interval`, `cfg_renorm_type` and `cfg_renorm_min`
from there and, in the versions read, fixes `timestep_shift` at 3.0 (the default here).
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
                 prompt_template: str = "<|im_start|>{prompt}<|im_end|>", **kwargs: Any):
        self.guidance = BagelGuidance.from_config(guidance)  # refused before anything else is set up
        super().__init__(base_url, **kwargs)
        self.negative_prompt = negative_prompt
        if "{prompt}" not in prompt_template:
            raise BackendUnavailable(f"generator.prompt_template={prompt_template!r} has no {{prompt}} placeholder")
        self.prompt_template = prompt_template

    def guidance_fields(self) -> dict[str, Any]:
        """BAGEL's guidance settings as vLLM-Omni's request fields (its step count is num_inference_steps)."""
        fields = self.guidance.as_dict()
        fields["num_inference_steps"] = fields.pop("num_timesteps")
        return fields

    def settings(self) -> dict[str, Any]:
        # The same names as in-process BAGEL's identity, so the two can be compared key by key.
        settings = {"width": self.width, "height": self.height, "prompt_template": self.prompt_template,
                    **self.guidance.as_dict()}
        if self.negative_prompt is not None:
            settings["negative_prompt"] = self.negative_prompt
        return settings

    def payload(self, request: GenerateRequest) -> dict[str, Any]:
        text = self.prompt_template.replace("{prompt}", request.prompt)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
            "modalities": ["image"],
            "height": request.height,
            "width": request.width,
            "seed": request.seed,
            **self.guidance_fields(),
        }
        if self.negative_prompt is not None:
            body["negative_prompt"] = self.negative_prompt
        return body

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
