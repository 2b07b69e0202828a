"""Scorers: models that measure images for the quality stages (alignment, aesthetics, safety).

`transformers_scorer.TransformersScorer` is the backend (`scorer=clip`, `scorer=siglip`): one
image–text model plus an optional aesthetic head and safety classifier, batched together.
`offline.OfflineScorer` measures the offline world's renderings (`scorer=offline`).
"""
