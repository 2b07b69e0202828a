"""GPU-hours per 1,000 accepted rows: per backend role and in total, with the assumption beside each.

What a role cost in GPU-seconds, from what the run measured:

- **in-process model** (BAGEL, a vLLM engine, a transformers teacher in this process): the run's
  wall time × the GPUs this process holds for it. The model is loaded before the walk and held
  until the run ends, so the whole run counts, not only its calls.
- **server** (vLLM serving the teacher, vLLM-Omni serving BAGEL, an images API): the time the run
  used it (the backend's own `wall_s`, first call to last answer, where it keeps one; else the
  walk) × the GPUs serving it × the run's share of that server (`cost.server_share`: 1 when the
  server served this run only).
- **offline world**: nothing runs on a GPU, so the figure is *simulated*: this run's backend calls
  × a per-call cost (`cost.simulated_gpu_s_per_call`, from the estimates of docs/scale_out.md),
  and labelled so wherever it is shown.

GPUs per role come from `cost.gpus.<role>`; a role left at null is assumed to have 1 GPU, and
the assumption says so. Kept out of the backends' own config nodes: those are passed whole to
the backends' constructors. Results read from the store cost nothing in this run, so a resumed
run's figure covers only what it computed (said beside the total).

"Accepted rows" are the rows over every mode (IRGL-300K counts rows over its six modes); the card
projects the total to the rows the recipe asked for. Wall-clock derived, so these figures live in
the manifest's `run` section beside the other timings, never in the shards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

OFFLINE_PREFIX = "offline-world/"
NO_GPU_ROLES = frozenset({"source"})  # reads rows; never a model


@dataclass(frozen=True)
class RoleCost:
    """How one role is run, as far as its cost goes."""

    role: str
    kind: str  # "offline", "server" or "in_process"
    gpus: float | None  # cost.gpus.<role>; None: not given (1 assumed)

    @classmethod
    def of(cls, role: str, identity_id: str, node: Mapping[str, Any] | None, gpus: float | None) -> "RoleCost":
        if str(identity_id).startswith(OFFLINE_PREFIX):
            kind = "offline"
        elif node is not None and node.get("base_url"):
            kind = "server"
        else:
            kind = "in_process"
        return cls(role, kind, None if gpus is None else float(gpus))


def roles_from_config(cfg: Any, identities: Mapping[str, Mapping[str, Any]]) -> list[RoleCost]:
    """The roles of a run (every backend but the source), from its config and backend identities."""
    gpus = cfg.cost.gpus or {}
    return [RoleCost.of(role, ident.get("id", ""), cfg.get(role), gpus.get(role))
            for role, ident in sorted(identities.items()) if role not in NO_GPU_ROLES]


def _per_1k(gpu_s: float, accepted: int) -> float | None:
    return round(gpu_s / 3600 * 1000 / accepted, 4) if accepted else None


def measure(roles: Iterable[RoleCost], *, accounting: Mapping[str, Mapping[str, Any]], calls: Mapping[str, int],
            elapsed_s: float, walk_s: float, accepted: int, requested: int | None, server_share: float,
            simulated_gpu_s_per_call: Mapping[str, float]) -> dict[str, Any]:
    """GPU-seconds per role and per 1,000 accepted rows, the total, and its projection to `requested` rows.

    `calls`: backend calls this run made per role; `elapsed_s`: the run's wall time so far;
    `walk_s`: the time the stages ran (a server without its own `wall_s` was in use that long)."""
    out: dict[str, Any] = {}
    for r in roles:
        gpus = 1.0 if r.gpus is None else r.gpus
        gpus_note = f"{gpus:g} GPU{'s' if gpus != 1 else ''}" + (f" (assumed: set cost.gpus.{r.role})"
                                                                 if r.gpus is None else "")
        if r.kind == "offline":
            per_call = float(simulated_gpu_s_per_call.get(r.role, 0.0))
            gpu_s = calls.get(r.role, 0) * per_call
            basis = "simulated"
            note = (f"simulated: offline world, {calls.get(r.role, 0)} calls × {per_call:g} GPU-s per call "
                    f"(cost.simulated_gpu_s_per_call.{r.role}, docs/scale_out.md estimates)")
        elif r.kind == "server":
            wall = (accounting.get(r.role) or {}).get("wall_s")
            used, used_note = (float(wall), "its first call to its last answer") if wall else (walk_s, "the walk")
            gpu_s = used * gpus * server_share
            basis = "measured"
            note = (f"server: {used:.1f} s in use ({used_note}) × {gpus_note} serving it × "
                    f"{server_share:g} share of the server (cost.server_share)")
        else:
            gpu_s = elapsed_s * gpus
            basis = "measured"
            note = f"in-process: {elapsed_s:.1f} s of run wall time × {gpus_note} held"
        out[r.role] = {"basis": basis, "gpu_s": round(gpu_s, 3), "per_1k_accepted": _per_1k(gpu_s, accepted),
                       "assumption": note}
    return _with_total(out, accepted, requested)


def _with_total(roles: dict[str, Any], accepted: int, requested: int | None) -> dict[str, Any]:
    total = sum(r["gpu_s"] for r in roles.values())
    per_1k = _per_1k(total, accepted)
    bases = {r["basis"] for r in roles.values()}
    basis = "simulated" if bases == {"simulated"} else "partly simulated" if "simulated" in bases else "measured"
    return {"accepted_rows": accepted, "requested_rows": requested, "simulated": basis != "measured", "roles": roles,
            "total": {"basis": basis, "gpu_s": round(total, 3), "per_1k_accepted": per_1k,
                      "projected_gpu_hours": (round(per_1k * requested / 1000, 3)
                                              if per_1k is not None and requested else None),
                      "assumption": "the sum of the roles; backend calls made by this run only "
                                    "(results read from the store cost nothing here)"}}


def merge(parts: Iterable[Mapping[str, Any] | None], accepted: int) -> dict[str, Any] | None:
    """A sharded run's figures: each part's GPU-seconds add up (they ran side by side), over all accepted rows."""
    parts = [p for p in parts if p]
    if not parts:
        return None
    roles: dict[str, Any] = {}
    for part in parts:
        for role, r in part["roles"].items():
            into = roles.setdefault(role, {"basis": r["basis"], "gpu_s": 0.0,
                                           "assumption": f"summed over {len(parts)} parts; each: {r['assumption']}"})
            into["gpu_s"] = round(into["gpu_s"] + r["gpu_s"], 3)
    for r in roles.values():
        r["per_1k_accepted"] = _per_1k(r["gpu_s"], accepted)
    return _with_total(roles, accepted, max((p.get("requested_rows") or 0) for p in parts) or None)


def card_lines(doc: Mapping[str, Any]) -> list[str]:
    """The card's table: GPU-hours per 1,000 accepted rows per role and in total, and the projection."""
    g = (doc.get("run") or {}).get("gpu_hours")
    if not g:
        return []
    basis = g["total"].get("basis", "simulated" if g["simulated"] else "measured")
    label = f" ({basis})" if g["simulated"] else ""
    lines = [f"### GPU-hours per 1,000 accepted rows{label}", "",
             f"Over {g['accepted_rows']} accepted rows (all modes). "
             + ("**Simulated** where the basis says so: the offline world runs no GPU, so its figures are "
                "per-call estimates. " if g["simulated"] else "") + "The assumption behind each number is beside it.",
             "", "| role | basis | GPU-seconds | GPU-hours per 1K accepted | assumption |", "|---|---|---:|---:|---|"]
    for role, r in g["roles"].items():
        lines.append(f"| {role} | {r['basis']} | {r['gpu_s']:,.1f} | {_fmt(r['per_1k_accepted'])} | {r['assumption']} |")
    t = g["total"]
    lines.append(f"| **total** | {basis} | {t['gpu_s']:,.1f} | "
                 f"**{_fmt(t['per_1k_accepted'])}** | {t['assumption']} |")
    if t.get("projected_gpu_hours") is not None:
        lines += ["", f"Projected to the requested {g['requested_rows']:,} rows: "
                      f"**{t['projected_gpu_hours']:,.1f} GPU-hours**{label} at this run's rate."]
    return lines + [""]


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:,.3f}"
