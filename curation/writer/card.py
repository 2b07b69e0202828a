"""The dataset card (`README.md`).

`render(doc)` needs only the manifest: the Hub's YAML header (one `configs:` entry and one
`dataset_info:` entry per mode), counts, accept rate per stage, how each mode was built, lineage
and the citation. `write(out, doc)` also reads the shards once (`figures.collect`) for what only
the rows know and writes small PNG plots under `assets/` that the card links, so they show on the Hub.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from curation.core.files import write_atomic
from curation.writer import emit

from curation.core import schema
from curation.writer import figures, gpu_hours, quality_figures
from curation.writer.figures import SAVED, STAGE_ROLES, Stats, collect, funnel, plots, saved, stage_order

OFFLINE_PREFIX = "offline-world/"
ASSETS = "assets"

CITATION = """@article{huang2025irg,
  title   = {Interleaving Reasoning for Better Text-to-Image Generation},
  author  = {Huang, Wenxuan and others},
  journal = {arXiv preprint arXiv:2509.06945},
  year    = {2025},
  url     = {https://arxiv.org/abs/2509.06945}
}"""


def configs_block(modes: list[str]) -> list[dict]:
    return [{"config_name": m, "data_files": [{"split": "train", "path": f"data/{m}/train-*"}]} for m in modes]


def dataset_info_block(doc: dict, split_bytes: dict[str, int] | None = None) -> list[dict]:
    """Per config: features (images included), rows and sizes, in the Hub's card format.

    `datasets` reads each split as `name`, `num_examples` and `num_bytes`, and warns on every load
    when one is missing. `num_bytes` is the split's size as Arrow holds it: the uncompressed size
    the Parquet footers record (`split_bytes`, read by `figures.collect`); without the shards at
    hand it is 0, which `datasets` reads as "unknown".

    Besides telling the Hub the columns and sizes, this makes `datasets`' cache key depend on the
    data: `load_dataset(<folder>)` keys its cache on the folder name and the card header (configs
    and dataset_info) only, so two builds with the same header would share a cache entry and the
    second would load the first one's rows. `datasets` also checks the row counts when it loads.
    """
    return [{"config_name": mode,
             # schema types are named as the card's dtypes: "string" and "image"
             "features": [{"name": c.name, "dtype": c.type} for c in schema.load(mode).columns],
             "splits": [{"name": "train", "num_bytes": int((split_bytes or {}).get(mode, 0)),
                         "num_examples": entry["accepted"]}],
             "download_size": sum(s["bytes"] for s in entry["shards"]),
             "dataset_size": int((split_bytes or {}).get(mode, 0))}
            for mode, entry in doc["modes"].items()]


# ----------------------------------------------------------------------------- the card


def render(doc: dict, stats: Stats | None = None, assets: list[str] | tuple[str, ...] = ()) -> str:
    """The card text; `stats` and `assets` (file names under `assets/`) add what the rows say."""
    modes = list(doc["modes"])
    header = {"configs": configs_block(modes), "dataset_info": dataset_info_block(doc, stats.split_bytes if stats else None), "license": "other",
              "task_categories": ["text-to-image"], "tags": ["irgl", "interleaved-reasoning", "synthetic"],
              "pretty_name": f"IRGL data ({doc['recipe']})"}
    lines = ["---", yaml.safe_dump(header, sort_keys=False).rstrip(), "---", "",
             f"# IRGL training data — recipe `{doc['recipe']}`", "",
             "Training data for text-to-image models that reason in turns (IRG, arXiv 2509.06945), in the",
             "IRGL learning modes. Built by irgl-curation "
             f"{doc['pipeline_version']} (schema version {doc['schema_version']}).", ""]
    if any(str(b.get("id", "")).startswith(OFFLINE_PREFIX) for b in doc["backends"].values()):
        lines += ["> **Simulated data.** Some backends of this run are the *offline world*, a simulator that",
                  "> renders compositional scenes and writes thinkings by measuring images. It is for testing",
                  "> pipelines and trainers, not a stand-in for the Qwen2.5-VL teacher or the BAGEL base model.", ""]
    lines += _modes_section(doc, assets)
    lines += ["## How to load", "", "```python", "import datasets",
              f"ds = datasets.load_dataset(\"<this repo or folder>\", \"{modes[0]}\", split=\"train\")", "```", ""]
    lines += _build_section(doc) + _columns_section(modes) + _rejects_section(doc, assets)
    lines += _data_section(doc, stats, assets) + quality_figures.card_lines(doc.get("quality"), assets, ASSETS)
    lines += _lineage_section(doc, stats)
    lines += ["## Citation", "", "The learning modes and the data format follow the IRG paper:", "",
              "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)


def _short(mode: str) -> str:
    return schema.load(mode).short


def _figure_line(name: str, assets, alt: str) -> list[str]:
    return [f"![{alt}]({ASSETS}/{name})", ""] if name in assets else []


def _modes_section(doc: dict, assets) -> list[str]:
    lines = ["## Modes", "", "Every sourced sample is either accepted or rejected with a reason: "
             "**sourced = accepted + rejected** for every mode.", "",
             "| mode | sourced | accepted | rejected | accept rate | shards |", "|---|---:|---:|---:|---:|---:|"]
    for mode, m in doc["modes"].items():
        rate = f"{m['accepted'] / m['sourced']:.1%}" if m["sourced"] else "—"
        lines.append(f"| `{mode}` | {m['sourced']} | {m['accepted']} | {m['rejected']} | {rate} | {len(m['shards'])} |")
    return lines + [""] + _figure_line("counts.png", assets, "accepted and rejected samples per mode")


def _build_section(doc: dict) -> list[str]:
    lines = ["## How each mode was built", "",
             "Stages run in this order; each stage's result is keyed by its inputs, backend and settings, "
             "so modes that share a stage share its results.", ""]
    for mode, m in doc["modes"].items():
        steps = []
        for stage in m.get("stages", []):
            role = STAGE_ROLES.get(stage)
            ident = doc["backends"].get(role, {}) if role else {}
            steps.append(f"{stage} (`{ident.get('id')}`)" if ident else stage)
        lines.append(f"- **`{mode}`**: source `{doc['backends'].get('source', {}).get('id')}` → gates → "
                     f"{' → '.join(steps) or '(no stage)'} → schema check")
    return lines + [""]


def _columns_section(modes: list[str]) -> list[str]:
    lines = ["## Columns", ""]
    for mode in modes:
        s = schema.load(mode)
        lines += [f"**`{mode}`** — {s.description}", "", "| column | type | filled from |", "|---|---|---|"]
        lines += [f"| `{col.name}` | {col.type} | {col.source} |" for col in s.columns]
        sequence = " → ".join(f"{seg.column}{' (loss)' if seg.loss else ''}" for seg in s.sequence)
        lines += ["", f"Training sequence: {sequence}", ""]
    return lines


def _rejects_section(doc: dict, assets) -> list[str]:
    lines = ["## Rejects", ""]
    rows = [(mode, reason, count) for mode, m in doc["modes"].items()
            for reason, count in m["rejects_by_reason"].items()]
    if rows:
        lines += ["| mode | stage/reason | count |", "|---|---|---:|"]
        lines += [f"| `{mode}` | `{reason}` | {count} |" for mode, reason, count in rows]
    else:
        lines.append("No sample was rejected.")
    lines += ["", "Every reject is listed with its detail in `rejects/rejects.parquet`.", "",
              "Accept rate per stage (samples that passed / samples that reached it):", ""]
    stages = stage_order(doc)
    lines += ["| mode | " + " | ".join(stages) + " |", "|---|" + "---:|" * len(stages)]
    for mode, entry in doc["modes"].items():
        rates = {s: (f"{p / e:.1%}" if e else "—") for s, e, p in funnel(entry)}
        lines.append(f"| `{_short(mode)}` | " + " | ".join(rates.get(s, "") for s in stages) + " |")
    return lines + [""] + _figure_line("accept_rate.png", assets, "samples left after each stage")


def _data_section(doc: dict, stats: Stats | None, assets) -> list[str]:
    lines = []
    if doc.get("checker"):
        c = doc["checker"]
        lines += ["## Initial vs improved images", "",
                  f"Checker accuracy over {c['samples']} samples: initial images {c['initial_accuracy']:.3f}, "
                  f"improved images {c['improved_accuracy']:.3f} (mean check score {c['initial_score']:.3f} → "
                  f"{c['improved_score']:.3f}).", ""]
        lines += _figure_line("checker.png", assets, "checker initial vs improved")
    if stats is None:
        return lines
    lines += _preference_lines(doc, stats)
    if stats.thinking_chars:
        lines += ["## Thinking lengths", "", "Characters per thinking over every row of each mode:", "",
                  "| thinking | mode | rows | min | median | 95th pct | max |", "|---|---|---:|---:|---:|---:|---:|"]
        for col, by_mode in stats.thinking_chars.items():
            for mode, h in by_mode.items():
                if h.total:
                    lines.append(f"| {col} | `{_short(mode)}` | {h.total} | {h.quantile(0):.0f} | "
                                 f"{h.quantile(0.5):.0f} | {h.quantile(0.95):.0f} | {h.quantile(1):.0f} |")
        lines += [""] + _figure_line("thinking_lengths.png", assets, "thinking length histograms")
    if stats.image_sizes:
        lines += ["## Image sizes", "", "Image sizes over every row (an image that several modes hold counts once "
                  "per mode), the five most common per pipeline field:", "",
                  "| image (pipeline field) | size (w×h) | images |", "|---|---|---:|"]
        for col, sizes in stats.image_sizes.items():
            lines += [f"| {col} | {w}×{h} | {n} |" for (w, h), n in sizes.most_common(5)]
        if stats.unreadable_images:
            lines += ["", f"{stats.unreadable_images} image(s) could not be read."]
        lines += [""] + _figure_line("image_sizes.png", assets, "image sizes")
    lines += ["## Cost", ""] + cost_lines(doc)
    accepted = sum(m["accepted"] for m in doc["modes"].values())
    if accepted and doc.get("run", {}).get("elapsed_s"):
        lines += [f"Wall time of the run: {doc['run']['elapsed_s']:.1f} s for {accepted} accepted rows "
                  f"({doc['run']['elapsed_s'] / accepted:.3f} s per row).", ""]
    return lines


def _preference_lines(doc: dict, stats: Stats) -> list[str]:
    rates = figures.preference_rates(doc, stats)
    if not rates:
        return []
    lines = ["## Judge preference", "",
             "A chat model compared the initial and the improved image of each pair, shown in both orders "
             "(`pairwise_judge`). Preference rate = pairs whose improved image won both orders / pairs judged "
             "(the published rows and the pairs it rejected); the paper reports "
             f"{figures.PAPER_PREFERENCE_RATE:.1%} (IRG, arXiv 2509.06945).", "",
             "| mode | judged | improved preferred | orders disagree | initial judged better | preference rate |",
             "|---|---:|---:|---:|---:|---:|"]
    for mode, preferred, judged, counts in rates:
        lines.append(f"| `{_short(mode)}` | {judged} | {preferred} | {counts['orders_disagree']} | "
                     f"{counts[figures.INITIAL_JUDGED_BETTER]} | {preferred / judged:.1%} |")
    return lines + [""]


def _lineage_section(doc: dict, stats: Stats | None) -> list[str]:
    lines = ["## Lineage", "", "| role | model | revision |", "|---|---|---|"]
    for role, ident in doc["backends"].items():
        lines.append(f"| {role} | `{ident.get('id')}` | {ident.get('revision')} |")
    lines += [""]
    if stats is not None and stats.models:
        lines += ["Models seen in the rows' lineage, by stage:", ""]
        for stage, models in sorted(stats.models.items()):
            lines.append(f"- {stage}: " + ", ".join(f"`{i}` (revision {r})" for i, r in sorted(models)))
        lines += [""]
    if stats is not None and stats.templates:
        lines += ["Template versions: " + ", ".join(f"{name} {'/'.join(sorted(v))}"
                                                    for name, v in sorted(stats.templates.items())), ""]
    lines += [f"Pipeline irgl-curation {doc['pipeline_version']}, schema version {doc['schema_version']}.", "",
              "Each row's `lineage` column (JSON) records the sample and source ids, the model, revision and",
              "settings of every backend that touched it, seeds, template and pipeline versions.",
              "`manifest.json` holds the run's counts, configuration (secrets redacted), versions and timings.", ""]
    return lines


def write(out: Path, doc: dict, *, workers: int | None = None) -> Stats:
    """The card and its plots: `assets/` is replaced whole, so no plot of an older run lingers.

    Reads every row once (`figures.collect`, bounded memory, `workers` processes) and returns
    what it read, so a caller that also writes a report need not read the rows again.
    """
    out = Path(out)
    stats = collect(out, doc, workers=workers)
    pngs = plots(doc, stats)
    staging = out / f".staging-{ASSETS}"
    shutil.rmtree(staging, ignore_errors=True)  # left over from a killed run
    staging.mkdir(parents=True)
    for name, data in pngs.items():
        (staging / name).write_bytes(data)
    (staging / SAVED).write_text(saved(out, doc, stats))  # the report reuses them while the shards are unchanged
    emit.replace_dir(staging, out / ASSETS)
    write_atomic(out / "README.md", render(doc, stats, sorted(pngs)))
    return stats


def cost_lines(doc: dict) -> list[str]:
    """The backends' own accounting of the run (the manifest's `run.backends`: calls, tokens, time in
    use). Shards hold none of it: lineage keeps only what determines a row, so a re-run gives the
    same bytes."""
    backends = doc.get("run", {}).get("backends") or {}
    if not backends:
        return ["The backends of this run kept no accounting of calls, tokens or time.", ""] + gpu_hours.card_lines(doc)
    keys = [k for k in ("calls", "prompt_tokens", "completion_tokens", "wall_s", "attempts", "retries")
            if any(isinstance(acc.get(k), (int, float)) for acc in backends.values())]
    lines = ["What each backend did in this run (its own accounting, from the manifest):", "",
             "| role | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for role, acc in backends.items():
        lines.append(f"| {role} | " + " | ".join(_number(acc.get(k)) for k in keys) + " |")
    for mode, rate in (doc.get("run", {}).get("accepted_per_teacher_hour") or {}).items():
        lines.append(f"\n`{mode}`: {rate:.0f} accepted rows per teacher-hour.")
    return lines + [""] + gpu_hours.card_lines(doc)


def _number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—"
    return f"{value:,.0f}" if isinstance(value, int) or float(value).is_integer() else f"{value:,.2f}"
