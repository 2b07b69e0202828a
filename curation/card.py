"""The dataset card (`README.md`): the Hub's YAML header plus what a reader needs to trust the data."""

from __future__ import annotations

import yaml

from curation import schema

OFFLINE_PREFIX = "offline-world/"


def configs_block(modes: list[str]) -> list[dict]:
    return [{"config_name": m, "data_files": [{"split": "train", "path": f"data/{m}/train-*"}]} for m in modes]


def render(doc: dict) -> str:
    modes = list(doc["modes"])
    header = {"configs": configs_block(modes), "license": "other", "task_categories": ["text-to-image"],
              "tags": ["irgl", "interleaved-reasoning", "synthetic"], "pretty_name": f"IRGL data ({doc['recipe']})"}
    offline = any(str(b.get("id", "")).startswith(OFFLINE_PREFIX) for b in doc["backends"].values())
    lines = ["---", yaml.safe_dump(header, sort_keys=False).rstrip(), "---", "",
             f"# IRGL training data — recipe `{doc['recipe']}`", "",
             "Training data for text-to-image models that reason in turns (IRG, arXiv 2509.06945), in the",
             "IRGL learning modes. Built by irgl-curation "
             f"{doc['pipeline_version']} (schema version {doc['schema_version']}).", ""]
    if offline:
        lines += ["> **Simulated data.** Some backends of this run are the *offline world*, a simulator that",
                  "> renders compositional scenes and writes thinkings by measuring images. It is for testing",
                  "> pipelines and trainers, not a stand-in for the Qwen2.5-VL teacher or the BAGEL base model.", ""]
    lines += ["## Modes", "", "Every sourced sample is either accepted or rejected with a reason: "
              "**sourced = accepted + rejected** for every mode.", "",
              "| mode | sourced | accepted | rejected | shards |", "|---|---:|---:|---:|---:|"]
    for mode, m in doc["modes"].items():
        lines.append(f"| `{mode}` | {m['sourced']} | {m['accepted']} | {m['rejected']} | {len(m['shards'])} |")
    lines += ["", "## How to load", "", "```python", "import datasets",
              f"ds = datasets.load_dataset(\"<this repo or folder>\", \"{modes[0]}\", split=\"train\")", "```", ""]
    lines += ["## Columns", ""]
    for mode in modes:
        s = schema.load(mode)
        lines.append(f"**`{mode}`** — {s.description}")
        lines.append("")
        lines.append("| column | type | filled from |")
        lines.append("|---|---|---|")
        for col in s.columns:
            lines.append(f"| `{col.name}` | {col.type} | {col.source} |")
        sequence = " → ".join(f"{seg.column}{' (loss)' if seg.loss else ''}" for seg in s.sequence)
        lines += ["", f"Training sequence: {sequence}", ""]
    lines += ["## Rejects", ""]
    any_rejects = False
    for mode, m in doc["modes"].items():
        for reason, count in m["rejects_by_reason"].items():
            if not any_rejects:
                lines += ["| mode | stage/reason | count |", "|---|---|---:|"]
                any_rejects = True
            lines.append(f"| `{mode}` | `{reason}` | {count} |")
    if not any_rejects:
        lines.append("No sample was rejected.")
    lines += ["", "Every reject is listed with its detail in `rejects/rejects.parquet`.", ""]
    if doc.get("checker"):
        c = doc["checker"]
        lines += ["## Initial vs improved images", "",
                  f"Checker accuracy over {c['samples']} samples: initial images {c['initial_accuracy']:.3f}, "
                  f"improved images {c['improved_accuracy']:.3f} (mean check score {c['initial_score']:.3f} → "
                  f"{c['improved_score']:.3f}).", ""]
    lines += ["## Lineage", "", "| role | model | revision |", "|---|---|---|"]
    for role, ident in doc["backends"].items():
        lines.append(f"| {role} | `{ident.get('id')}` | {ident.get('revision')} |")
    lines += ["", "Each row's `lineage` column (JSON) records the sample and source ids, the model, revision and",
              "settings of every backend that touched it, seeds, template and pipeline versions.",
              "`manifest.json` holds the run's counts, configuration (secrets redacted), versions and timings.", ""]
    return "\n".join(lines)
