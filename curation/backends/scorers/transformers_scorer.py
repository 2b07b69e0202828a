"""The scorer backend on `transformers`: alignment (CLIP/SigLIP), an aesthetic head, a safety classifier,
a preference reward model (PickScore, CLIP-shaped).

`scorer=clip` / `scorer=siglip` / `scorer=pickscore` (recipes/scorer/). Each model is loaded once, at `check()`, on the
GPU when there is one. Requests from concurrent samples are grouped by a micro-batcher: one forward
pass per model per batch of up to `max_batch_size` images. Any part may be left out (`model: null`
scores no alignment and gives no embedding; the aesthetic head needs the alignment model's image
embeddings), but at least one must be set.

Identity (hence the stage keys): each model's id and revision, the dtype and the text padding;
the batch size and the device are left out (they change results only by float noise).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from curation.backends.base import BackendUnavailable, ImageInput, ImageScores, Scorer
from curation.backends.scorers.batching import MicroBatcher
from curation.backends.scorers.weights import (file_revision, folder_revision, model_folder, resolve_device,
                                               resolve_dtype)


class TransformersScorer(Scorer):
    def __init__(self, *, model: str | None = None, model_id: str | None = None, revision: str | None = None,
                 text_padding: str = "longest", aesthetic_head: str | None = None, aesthetic_id: str | None = None,
                 aesthetic_activation: str = "none", safety_model: str | None = None, safety_id: str | None = None,
                 safety_revision: str | None = None, unsafe_labels: Sequence[str] = ("nsfw",),
                 preference_model: str | None = None, preference_processor: str | None = None,
                 preference_id: str | None = None, preference_revision: str | None = None,
                 device: str = "auto", dtype: str = "auto", max_batch_size: int = 32, max_wait_ms: float = 20,
                 concurrency: int = 64):
        if not model and not safety_model and not preference_model:
            raise BackendUnavailable("scorer needs scorer.model (a CLIP or SigLIP folder), scorer.safety_model "
                                     "(an image-classification folder) and/or scorer.preference_model (PickScore); "
                                     "all are unset")
        if aesthetic_head and not model:
            raise BackendUnavailable("scorer.aesthetic_head reads the CLIP image embedding of scorer.model: set it")
        self.parts: dict[str, dict[str, Any]] = {}
        if model:
            folder = model_folder(model, "scorer.model", "openai/clip-vit-large-patch14")
            self.parts["alignment"] = {"folder": folder, "id": model_id or folder.name,
                                       "revision": revision or folder_revision(folder)}
        if aesthetic_head:
            path = Path(aesthetic_head).expanduser()
            if not path.is_file():
                raise BackendUnavailable(f"scorer.aesthetic_head={aesthetic_head} does not exist: give the head's "
                                         "weight file (e.g. LAION's sac+logos+ava1-l14-linearMSE.pth)")
            self.parts["aesthetic"] = {"path": path, "id": aesthetic_id or path.name, "revision": file_revision(path)}
        if safety_model:
            folder = model_folder(safety_model, "scorer.safety_model", "Falconsai/nsfw_image_detection")
            self.parts["unsafe"] = {"folder": folder, "id": safety_id or folder.name,
                                    "revision": safety_revision or folder_revision(folder)}
        if preference_model:
            folder = model_folder(preference_model, "scorer.preference_model", "yuvalkirstain/PickScore_v1")
            processor = Path(preference_processor).expanduser() if preference_processor else folder
            if not processor.is_dir():
                raise BackendUnavailable(f"scorer.preference_processor={preference_processor} is not a folder: give "
                                         "the processor's (hf download laion/CLIP-ViT-H-14-laion2B-s32B-b79K "
                                         "--local-dir <folder>)")
            self.parts["preference"] = {"folder": folder, "processor": processor, "id": preference_id or folder.name,
                                        "revision": preference_revision or folder_revision(folder)}
        self.text_padding = text_padding
        self.aesthetic_activation = aesthetic_activation
        self.unsafe_labels = [str(label) for label in unsafe_labels]
        self.device_setting, self.dtype_setting = device, dtype
        self.concurrency = int(concurrency)
        self.batcher = MicroBatcher(self._score_batch, max_batch_size=int(max_batch_size),
                                    max_wait_s=float(max_wait_ms) / 1000, name="scorer")
        self._alignment = self._aesthetic = self._safety = self._preference = None
        self._loaded = False

    def identity(self) -> dict:
        main = self.parts.get("alignment") or self.parts.get("preference") or self.parts["unsafe"]
        settings = {"dtype": self.dtype_setting,
                    "models": {kind: {"id": p["id"], "revision": p["revision"]} for kind, p in self.parts.items()}}
        if "alignment" in self.parts:
            settings["text_padding"] = self.text_padding
        if "aesthetic" in self.parts:
            settings["aesthetic_activation"] = self.aesthetic_activation
        if "unsafe" in self.parts:
            settings["unsafe_labels"] = self.unsafe_labels
        if "preference" in self.parts:
            settings["preference_processor"] = folder_revision(self.parts["preference"]["processor"])
        return {"id": main["id"], "revision": main["revision"], "settings": settings}

    def check(self) -> None:
        self._load()

    def _load(self) -> None:
        if self._loaded:
            return
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailable(f"the transformers scorer needs torch and transformers "
                                     f"(pip install '.[models]'): {exc}") from None
        from curation.backends.scorers.aesthetic import AestheticHead
        from curation.backends.scorers.alignment import AlignmentModel
        from curation.backends.scorers.preference import PreferenceModel
        from curation.backends.scorers.safety import SafetyClassifier

        device = resolve_device(self.device_setting)
        dtype = resolve_dtype(self.dtype_setting, device)
        if "alignment" in self.parts:
            self._alignment = AlignmentModel(self.parts["alignment"]["folder"], device=device, dtype=dtype,
                                             text_padding=self.text_padding)
        if "aesthetic" in self.parts:
            self._aesthetic = AestheticHead(self.parts["aesthetic"]["path"], activation=self.aesthetic_activation,
                                            embedding_dim=self._alignment.embedding_dim, device=device)
        if "unsafe" in self.parts:
            self._safety = SafetyClassifier(self.parts["unsafe"]["folder"], unsafe_labels=self.unsafe_labels,
                                            device=device, dtype=dtype)
        if "preference" in self.parts:
            part = self.parts["preference"]
            self._preference = PreferenceModel(part["folder"], part["processor"], device=device, dtype=dtype)
        self._loaded = True

    async def score(self, prompt: str, image: ImageInput) -> ImageScores:
        self._load()
        return await self.batcher.submit((prompt, image))

    def _score_batch(self, items: list[tuple[str, ImageInput]]) -> list[ImageScores]:
        prompts = [prompt for prompt, _ in items]
        pixels = [image.pil() for _, image in items]
        models = {kind: {"id": p["id"], "revision": p["revision"]} for kind, p in self.parts.items()}
        n = len(items)
        alignment = embeddings = aesthetic = unsafe = preference = [None] * n
        if self._alignment is not None:
            batch = self._alignment(prompts, pixels)
            alignment = batch.alignment
            embeddings = [tuple(row) for row in batch.image_embeds.tolist()]
            if self._aesthetic is not None:
                aesthetic = self._aesthetic(batch.image_embeds)
        if self._safety is not None:
            unsafe = self._safety(pixels)
        if self._preference is not None:
            preference = self._preference(prompts, pixels)
        return [ImageScores(alignment=alignment[i], aesthetic=aesthetic[i], unsafe=unsafe[i], preference=preference[i],
                            embedding=embeddings[i], models=models) for i in range(n)]

    async def aclose(self) -> None:
        await self.batcher.aclose()
