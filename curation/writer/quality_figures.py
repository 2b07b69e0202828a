"""What the quality stages found, for the card and the report: score histograms per mode and the
accept rate of each quality check.

`QualitySummary` sees the run's outcomes once, while emit reads them, and gives a small JSON summary
— histograms, counts and the thresholds — for the manifest. `plots` and `card_lines` draw it.
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
    ("hq preference", "score_hq_image", ("preference", "value")),
    ("initial preference", "score_initial_image", ("preference", "value")),
    ("preference gain", "improvement", ("preference_gain",)),
)
CHECKS = ("hq_image_quality", "initial_image_quality", "improvement")
# The gains are read from the two scoring stages, not from the improvement stage's lineage: a sample
# the margin rejects has no lineage there, and its gain is the tail the histogram must show.
GAIN_OF = {"alignment gain": "alignment", "preference gain": "preference"}


def _read(lineage: Mapping, path: tuple[str, ...]) -> float | None:
    value: Any = lineage
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, (int, float)) else None


def _gain(lineage: Mapping, score: str) -> float | None:
    """improved − initial, as the improvement stage computes it, from the scoring stages' lineage."""
    improved = _read(lineage.get("score_hq_image", {}), (score, "value"))
    initial = _read(lineage.get("score_initial_image", {}), (score, "value"))
    return None if improved is None or initial is None else improved - initial


# Each score is counted into FINE_BINS fixed bins over the range it can take (values outside it
# fall into the end bins; min and max are kept exactly), so memory is bounded whatever the number
# of samples; the figures then show BINS bins spanning the values actually seen. The manifest keeps
# the fine bins too (from the first to the last non-empty one) and the sum as an integer of 1e-9
# units, so the summaries of a sharded run's parts add up to exactly the one-process summary.
FINE_BINS = 2000
SUM_UNIT = 1e-9
# A preference score is a reward model's logit (PickScore: 100 × a cosine, ~18–24 in practice; the
# offline world's ~0–20): the range a logit scale of 100 allows, 0.1 per fine bin.
RANGES = {"alignment": (-1.0, 1.0), "aesthetic": (0.0, 10.0), "unsafe": (0.0, 1.0), "gain": (-2.0, 2.0),
          "preference": (-100.0, 100.0), "preference_gain": (-50.0, 50.0)}


class _Histogram:
    def __init__(self, low: float, high: float):
        self.low, self.high = low, high
        self.counts = np.zeros(FINE_BINS, dtype=np.int64)
        self.n, self.sum_units, self.min, self.max = 0, 0, float("inf"), float("-inf")

    def add(self, value: float) -> None:
        i = int((value - self.low) / (self.high - self.low) * FINE_BINS)
        self.counts[min(max(i, 0), FINE_BINS - 1)] += 1
        self.n += 1
        self.sum_units += round(value / SUM_UNIT)  # an integer: sums in any order are equal
        self.min, self.max = min(self.min, value), max(self.max, value)

    def add_histogram(self, other: "_Histogram") -> None:
        self.counts += other.counts
        self.n += other.n
        self.sum_units += other.sum_units
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)

    def to_json(self) -> dict[str, Any]:
        width = (self.high - self.low) / FINE_BINS
        first = int(np.flatnonzero(self.counts)[0])
        last = int(np.flatnonzero(self.counts)[-1]) + 1
        step = max(1, -(-(last - first) // BINS))  # fine bins per shown bin
        counts = [int(self.counts[i:i + step].sum()) for i in range(first, last, step)]
        edges = [round(self.low + (first + k * step) * width, 6) for k in range(len(counts) + 1)]
        return {"n": self.n, "mean": round(self.sum_units * SUM_UNIT / self.n, 6), "min": round(self.min, 6),
                "max": round(self.max, 6), "edges": edges, "counts": counts,
                "fine": {"low": self.low, "high": self.high, "bins": FINE_BINS, "first": first,
                         "counts": [int(c) for c in self.counts[first:last]], "sum_units": self.sum_units,
                         "min": self.min, "max": self.max}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "_Histogram":
        fine = data.get("fine")
        if not fine or fine.get("bins") != FINE_BINS:
            raise ValueError("a quality histogram without its fine bins (written by an older version)")
        hist = cls(fine["low"], fine["high"])
        hist.counts[fine["first"]:fine["first"] + len(fine["counts"])] = fine["counts"]
        hist.n, hist.sum_units = int(hist.counts.sum()), int(fine["sum_units"])
        hist.min, hist.max = float(fine["min"]), float(fine["max"])
        return hist


def merge(summaries: Iterable[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """The summary of a sharded run from its parts' summaries (`QualitySummary.to_json` each):
    histograms and counts add up, so it equals what one process over every sample writes.
    Raises ValueError for a part written without fine bins."""
    parts = [s for s in summaries if s]
    if not parts:
        return None
    modes: dict[str, dict[str, Any]] = {}
    for part in parts:
        for mode, entry in part["modes"].items():
            into = modes.setdefault(mode, {"scores": {}, "checks": {}})
            for label, data in entry["scores"].items():
                hist = _Histogram.from_json(data)
                if label in into["scores"]:
                    into["scores"][label].add_histogram(hist)
                else:
                    into["scores"][label] = hist
            for stage, count in entry["checks"].items():
                total = into["checks"].setdefault(stage, {"checked": 0, "passed": 0, "rejected": {}})
                total["checked"] += count["checked"]
                total["passed"] += count["passed"]
                for reason, k in count["rejected"].items():
                    total["rejected"][reason] = total["rejected"].get(reason, 0) + k
    order = [m for part in parts for m in part["modes"]]
    merged = {"modes": {}}
    for mode in dict.fromkeys(order):
        entry = modes[mode]
        labels = [label for label, _, _ in SCORES if label in entry["scores"]]
        merged["modes"][mode] = {"scores": {label: entry["scores"][label].to_json() for label in labels},
                                 "checks": {s: _sorted_check(entry["checks"][s]) for s in CHECKS if s in entry["checks"]}}
    merged["thresholds"] = parts[0].get("thresholds", {})
    return merged


def _sorted_check(count: dict[str, Any]) -> dict[str, Any]:
    return {**count, "rejected": dict(sorted(count["rejected"].items()))}


class QualitySummary:
    """Score histograms per mode and counts per quality check, filled in one pass: `observe`
    passes the run's outcomes through while emit reads them (every sample, accepted or not: a
    histogram of accepted rows only would hide the tail a threshold cut off)."""

    def __init__(self, modes: Mapping[str, int], mode_stages: Mapping[str, tuple[str, ...]],
                 thresholds: Mapping[str, Mapping] | None = None):
        self.counts = dict(modes)
        self.mode_stages = mode_stages
        self.modes = [m for m, stages in mode_stages.items() if set(CHECKS) & set(stages)]
        self.thresholds = thresholds
        self.values = {m: {label: _Histogram(*RANGES[path[0]]) for label, _, path in SCORES} for m in self.modes}
        self.checks = {m: {s: {"checked": 0, "passed": 0, "rejected": {}} for s in CHECKS if s in mode_stages[m]}
                       for m in self.modes}

    def observe(self, outcomes: Iterable) -> Iterable:
        for outcome in outcomes:
            self.add(outcome)
            yield outcome

    def add(self, outcome) -> None:
        """One sample's `Outcome` (index, lineage by stage, rejects by stage)."""
        for mode in self.modes:
            if outcome.index >= self.counts[mode]:
                continue
            for label, stage, path in SCORES:
                if stage in self.mode_stages[mode]:
                    value = _gain(outcome.lineage, GAIN_OF[label]) if label in GAIN_OF else \
                        _read(outcome.lineage.get(stage, {}), path)
                    if value is not None:
                        self.values[mode][label].add(value)
            for stage, count in self.checks[mode].items():
                if stage in outcome.rejects:
                    count["checked"] += 1
                    reason = outcome.rejects[stage].reason
                    count["rejected"][reason] = count["rejected"].get(reason, 0) + 1
                elif stage in outcome.lineage:
                    count["checked"] += 1
                    count["passed"] += 1

    def to_json(self) -> dict[str, Any] | None:
        """`{"modes": {mode: {"scores": {label: histogram}, "checks": {stage: counts}}}, "thresholds": …}`,
        or None when no mode ran a quality check."""
        if not self.modes:
            return None
        summary: dict[str, Any] = {"modes": {}}
        for mode in self.modes:
            scores = {label: h.to_json() for label, h in self.values[mode].items() if h.n}
            summary["modes"][mode] = {"scores": scores,
                                      "checks": {s: _sorted_check(c) for s, c in self.checks[mode].items()}}
        summary["thresholds"] = ({s: dict(self.thresholds.get(s, {})) for s in CHECKS} if self.thresholds else {})
        return summary


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
                 "alignment gain": ("improvement", "min_margin"),
                 "hq preference": ("hq_image_quality", None),  # no threshold on the score itself
                 "initial preference": ("initial_image_quality", None),
                 "preference gain": ("improvement", "min_preference_margin")}


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
            limit = None if knob is None else summary.get("thresholds", {}).get(stage, {}).get(knob)
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


def card_lines(summary: Mapping | None, assets: Iterable[str] = (), folder: str = "assets") -> list[str]:
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
            lines += [f"![{name[:-4]}]({folder}/{name})", ""]
    return lines
