"""`generator=bagel_omni`: BAGEL-7B-MoT served by vLLM-Omni, as the base model.

    vllm serve ByteDance-Seed/BAGEL-7B-MoT --omni --port 8000

The request is vLLM-Omni's documented text-to-image chat call: `POST {base_url}/chat/completions`
with one user message whose text part is the prompt wrapped in BAGEL's turn markers
(`<|im_start|>…<|im_end|>`), `"modalities": ["image"]`, and `height`, `width`,
`num_inference_steps`, `seed` as top-level fields. The image comes back as a data URI in the
message content (`{"type": "image_url", "image_url": {"url": "data:image/png;base64,…"}}`).

BAGEL's own guidance settings (cfg_text_scale, cfg_interval, timestep_shift …) go in
`extra_body`, sent as further top-level fields, which vLLM-Omni passes to the pipeline.
Retries, time-outs and rejects are those of every HTTP image backend (`images_api.py`).
"""

from __future__ import annotations

from typing import Any

from curation.backends.base import BackendUnavailable, GenerateRequest
from curation.backends.generators.images_api import HttpImageGenerator
from curation.core.records import Reject


class BagelOmniGenerator(HttpImageGenerator):
    path = "/chat/completions"
    serve_hint = "vllm serve ByteDance-Seed/BAGEL-7B-MoT --omni"

    def __init__(self, base_url: str, num_inference_steps: int = 50, negative_prompt: str | None = None,
                 prompt_template: str = "<|im_start|>{prompt}<|im_end|>", **kwargs: Any):
        super().__init__(base_url, **kwargs)
        self.num_inference_steps = int(num_inference_steps)
        self.negative_prompt = negative_prompt
        if "{prompt}" not in prompt_template:
            raise BackendUnavailable(f"generator.prompt_template={prompt_template!r} has no {{prompt}} placeholder")
        self.prompt_template = prompt_template

    def settings(self) -> dict[str, Any]:
        settings = {"width": self.width, "height": self.height, "num_inference_steps": self.num_inference_steps,
                    "prompt_template": self.prompt_template, **self.extra_body}
        if self.negative_prompt is not None:
            settings["negative_prompt"] = self.negative_prompt
        return settings

    def payload(self, request: GenerateRequest) -> dict[str, Any]:
        text = self.prompt_template.replace("{prompt}", request.prompt)
        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
            "modalities": ["image"],
            "height": request.height,
            "width": request.width,
            "num_inference_steps": self.num_inference_steps,
            "seed": request.seed,
        }
        if self.model is not None:
            body["model"] = self.model
        if self.negative_prompt is not None:
            body["negative_prompt"] = self.negative_prompt
        body.update(self.extra_body)
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
                        return Reject(self.stage_name, "bad_image_data", f"choice {i}: the data URI is not base64")
                    return self.decode_base64(encoded, f"choices[{i}] image data URI")
        return Reject(self.stage_name, "no_image", "no choice of the response holds a data:image URI")
