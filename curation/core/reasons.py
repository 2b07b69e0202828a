"""Reject reasons of the gates, by what is wrong with a source row.

One catalogue, read by the gates and by the sources (which use the first few for rows they
cannot read at all); a reason is a stable string that lands in the rejects table and the card.
"""

STAGE = "gates"

# Reject reasons, by what is wrong. Sources use the first three for rows they cannot read.
ROW_UNREADABLE = "row_unreadable"  # the source could not read the row at all (bad JSON line …)
IMAGE_MISSING = "image_missing"  # the row should carry an image and has none
CAPTION_MISSING = "caption_missing"  # an image without any caption
PROMPT_MISSING = "prompt_missing"
PROMPT_NOT_TEXT = "prompt_not_text"
PROMPT_EMPTY = "prompt_empty"
PROMPT_TOO_LONG = "prompt_too_long"
PROMPT_DUPLICATE = "prompt_duplicate"
IMAGE_UNDECODABLE = "image_undecodable"  # not an image at all (the header does not parse)
IMAGE_TRUNCATED = "image_truncated"  # the header parses, the pixel data does not decode
IMAGE_DECOMPRESSION_BOMB = "image_decompression_bomb"
IMAGE_TOO_SMALL = "image_too_small"
IMAGE_ASPECT_RATIO = "image_aspect_ratio"
IMAGE_DUPLICATE = "image_duplicate"
IMAGE_NEAR_DUPLICATE = "image_near_duplicate"

# Rows a source could read but not decode, and rows whose id (`source.id_column`) is unusable.
ROW_UNDECODABLE = "row_undecodable"  # a value the reading library cannot decode (bytes not UTF-8, a broken struct)
ID_MISSING = "id_missing"  # the id column is null in this row
ID_EMPTY = "id_empty"  # the id is an empty or white-space string
ID_INVALID = "id_invalid"  # the id is neither text nor an integer
ID_DUPLICATE = "id_duplicate"  # the same id as an earlier row (the first keeps it)

# Reject reasons of the quality stages (curation/pipeline/stages/*_quality.py, improvement.py) and of
# the semantic dedup (curation/pipeline/semantic_dedup.py).
LOW_ALIGNMENT = "low_alignment"  # image–prompt alignment below the stage's min_alignment
LOW_AESTHETIC = "low_aesthetic"  # aesthetic score below min_aesthetic
UNSAFE = "unsafe"  # unsafe probability above max_unsafe
IMPROVED_NOT_BETTER = "improved_not_better"  # hq alignment − initial alignment below min_margin
PREFERENCE_NOT_BETTER = "preference_not_better"  # hq preference − initial preference below min_preference_margin
SCORE_NOT_MEASURED = "score_not_measured"  # a threshold is set on a score the scorer does not measure
SEMANTIC_DUPLICATE = "semantic_duplicate"  # embedding cosine ≥ threshold with a better-ranked sample (pipeline/dedup.py)
