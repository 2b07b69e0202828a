"""What the quality stages found, for the card and the report: score histograms per mode and the
accept rate of each quality check.

`summarise` reads the run's outcomes once (every sample, accepted or not: a histogram of accepted
rows only would hide the tail a threshold cut off) and returns a small JSON summary — fixed-bin
histograms, counts and the thresholds — for the manifest. `plots` and `card_lines` draw it.
Both are pure functions of the summary, so the same run gives byte-identical PNGs and text.
"""

from __future__ import annotations

import io
from typing import Any, Iterable, Mapping

import numpy as np

BINS = 20
# (figure label, stage whose lineage holds it, how to read the value from that lineage)
SCORES = (
    ("hq alignment", "score_hq_image", ("alignment", "value")),
    ("hq aesthetic", "score_hq_image", ("aesthetic", "value")),
    ("hq unsafe", "score_hq_image", ("unsafe", "value")),
    ("initial alignment", "score_initial_image", ("alignment", "value")),
    ("initial unsafe", "score_initial_image", ("unsafe", "value")),
    ("alignment gain", "improvement", ("gain",)),
)
CHECKS = ("hq_image_quality", "initial_image_quality", "improvement")


def _read(lineage: Mapping, path: tuple[str, ...]) -> float | None:
    value: Any = lineage
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, (int, float)) else None


def summarise(outcomes: Iterable[Mapping], modes_for, mode_stages: Mapping[str, tuple[str, ...]],
              thresholds: Mapping[str, Mapping] | None = None) -> dict[str, Any] | None:
    """`{mode: {"scores": {label: histogram}, "checks": {stage: {...}}}, "thresholds": ...}`, or None
    when no mode ran a quality check.

    `outcomes` are the executor's per-sample records (`index`, `lineage` by stage, `rejects` by
    stage); `modes_for(index)` names the modes a sample was sourced for (`Plan.modes_for`).
    """
    modes = [m for m, stages in mode_stages.items() if set(CHECKS) & set(stages)]
    if not modes:
        return None
    values = {m: {label: [] for label, _, _ in SCORES} for m in modes}
    checks = {m: {s: {"checked": 0, "passed": 0, "rejected": {}} for s in CHECKS if s in mode_stages[m]}
              for m in modes}
    for outcome in outcomes:
        lineage, rejects = outcome.get("lineage", {}), outcome.get("rejects", {})
        for mode in modes_for(outcome["index"]):
            if mode not in values:
                continue
            for label, stage, path in SCORES:
                if stage in mode_stages[mode]:
                    value = _read(lineage.get(stage, {}), path)
                    if value is not None:
                        values[mode][label].append(value)
            for stage, count in checks[mode].items():
                if stage in rejects:
                    count["checked"] += 1
                    reason = rejects[stage]["reason"]
                    count["rejected"][reason] = count["rejected"].get(reason, 0) + 1
                elif stage in lineage:
                    count["checked"] += 1
                    count["passed"] += 1
    summary: dict[str, Any] = {"modes": {}}
    for mode in modes:
        scores = {label: _histogram(v) for label, v in values[mode].items() if v}
        summary["modes"][mode] = {"scores": scores, "checks": checks[mode]}
    summary["thresholds"] = {s: dict(thresholds.get(s, {})) for s in CHECKS} if thresholds else {}
    return summary


def _histogram(values: list[float]) -> dict[str, Any]:
    data = np.asarray(values, dtype=np.float64)
    low, high = float(data.min()), float(data.max())
    if high == low:  # one value: one bin around it
        low, high = low - 0.5, high + 0.5
    counts, edges = np.histogram(data, bins=BINS, range=(low, high))
    return {"n": int(data.size), "mean": round(float(data.mean()), 6), "min": round(float(data.min()), 6),
            "max": round(float(data.max()), 6), "edges": [round(float(e), 6) for e in edges],
            "counts": [int(c) for c in counts]}


def accept_rates(summary: Mapping) -> list[tuple[str, str, int, float]]:
    """(mode, check, checked, accept rate) for every check a mode ran on at least one sample."""
    rows = []
    for mode, entry in summary["modes"].items():
        for stage, count in entry["checks"].items():
            if count["checked"]:
                rows.append((mode, stage, count["checked"], count["passed"] / count["checked"]))
    return rows


# ----------------------------------------------------------------------------- drawing


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})  # no date or version chunks
    return buffer.getvalue()


_THRESHOLD_OF = {"hq alignment": ("hq_image_quality", "min_alignment"),
                 "hq aesthetic": ("hq_image_quality", "min_aesthetic"),
                 "hq unsafe": ("hq_image_quality", "max_unsafe"),
                 "initial alignment": ("initial_image_quality", "min_alignment"),
                 "initial unsafe": ("initial_image_quality", "max_unsafe"),
                 "alignment gain": ("improvement", "min_margin")}


def plots(summary: Mapping | None) -> dict[str, bytes]:
    """PNG bytes by file name: `quality_<mode>.png` (score histograms, thresholds dashed) and
    `quality_accept_rate.png`; nothing when no quality check ran."""
    if not summary:
        return {}
    from matplotlib.figure import Figure

    out = {}
    for mode, entry in summary["modes"].items():
        labels = list(entry["scores"])
        if not labels:
            continue
        fig = Figure(figsize=(3 * len(labels), 2.6), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(labels)))
        for ax, label in zip(axes, labels):
            hist = entry["scores"][label]
            edges = np.asarray(hist["edges"])
            ax.bar(edges[:-1], hist["counts"], width=np.diff(edges), align="edge", color="#4f81bd")
            stage, knob = _THRESHOLD_OF[label]
            limit = summary.get("thresholds", {}).get(stage, {}).get(knob)
            if limit is not None:
                ax.axvline(limit, color="#c0504d", linestyle="--", label=f"{knob} {limit}")
                ax.legend(fontsize=6)
            ax.set_title(f"{label} (n={hist['n']})", fontsize=8)
            ax.tick_params(labelsize=6)
        fig.suptitle(mode, fontsize=9)
        out[f"quality_{mode}.png"] = _png(fig)
    rates = accept_rates(summary)
    if rates:
        fig = Figure(figsize=(6, 0.3 * len(rates) + 1), layout="constrained")
        ax = fig.subplots()
        names = [f"{mode} · {stage}" for mode, stage, _, _ in rates]
        ax.barh(names, [r for *_, r in rates], color="#3b7d3b")
        ax.set_xlim(0, 1.0)
        ax.invert_yaxis()
        ax.set_xlabel("accepted / checked")
        ax.tick_params(labelsize=6)
        out["quality_accept_rate.png"] = _png(fig)
    return out


def card_lines(summary: Mapping | None, assets: Iterable[str] = ()) -> list[str]:
    """Markdown for the card: one table of checks (checked, accept rate, rejects by reason) and the figures."""
    if not summary:
        return []
    assets = set(assets)
    lines = ["## Quality checks", "", "| mode | check | checked | accepted | rejects by reason |",
             "|---|---|---|---|---|"]
    for mode, entry in summary["modes"].items():
        for stage, count in entry["checks"].items():
            reasons = ", ".join(f"{r}: {n}" for r, n in sorted(count["rejected"].items())) or "none"
            rate = f"{count['passed'] / count['checked']:.1%}" if count["checked"] else "–"
            lines.append(f"| {mode} | {stage} | {count['checked']} | {rate} | {reasons} |")
    lines.append("")
    for name in sorted(assets):
        if name.startswith("quality_"):
            lines += [f"![{name[:-4]}]({name})", ""]
    return lines
