"""Watching a run while it goes: a live page and Prometheus metrics, served by the run itself.

Off by default; `run.live=true` (any free port, printed) or `run.live_port=N` turns it on:

    python -m curation.run recipe=all n=300000 run.live_port=9108
    # then http://127.0.0.1:9108/ in a browser (ssh -L 9108:127.0.0.1:9108 from a laptop),
    # and http://127.0.0.1:9108/metrics for Prometheus

A layer of its own above `writer` (it shows the writer's GPU-hours figures) and beside
`after_run`; only the entrypoints import it. See docs/monitoring.md.
"""

from __future__ import annotations

from typing import Any, Callable

from omegaconf import DictConfig

from curation.core.images import ImageRef
from curation.core.logs import EventLog
from curation.core.progress import Progress
from curation.pipeline.plan import Plan
from curation.monitor.metrics import registry_for
from curation.monitor.server import LiveServer, LiveServerError
from curation.monitor.state import CostModel, LiveState
from curation.writer import gpu_hours

__all__ = ["Live", "LiveServerError", "cost_model"]


def cost_model(cfg: DictConfig, identities: dict[str, Any], plan: Plan) -> CostModel:
    return CostModel(roles=tuple(gpu_hours.roles_from_config(cfg, identities)),
                     server_share=float(cfg.cost.server_share),
                     simulated_gpu_s_per_call=dict(cfg.cost.simulated_gpu_s_per_call or {}),
                     requested_rows=sum(plan.modes.values()))


class Live:
    """The run's live page and metrics: its state (fed by the walker) and its server."""

    def __init__(self, state: LiveState, server: LiveServer, linger_s: float):
        self.state = state
        self.server = server
        self.linger_s = linger_s

    @classmethod
    def from_config(cls, cfg: DictConfig, plan: Plan, progress: Progress, identities: dict[str, Any], store,
                    log: EventLog, summaries: Callable[[], dict[str, dict]] = dict) -> "Live | None":
        run = cfg.run
        if not run.live and run.live_port is None:
            return None
        state = LiveState(plan=plan, progress=progress, summaries=summaries, cost=cost_model(cfg, identities, plan),
                          recent=int(run.live_recent), executor=cfg.executor.name)
        server = LiveServer(state, registry_for(state, cfg.recipe.name),
                            lambda sha, fmt: store.image_bytes(ImageRef(sha, fmt, 0, 0, 0)),
                            host=str(run.live_host), port=int(run.live_port or 0))
        url = server.start()
        if not server.local_only:
            log.say(f"warning: the live page listens on {run.live_host}: anyone who can reach this machine sees "
                    "the prompts, thinkings and images being built (run.live_host=127.0.0.1 keeps it local)",
                    "live_page_exposed", host=str(run.live_host), port=server.port)
        log.say(f"live page: {url}  (metrics: {url}metrics)", "live_page", url=url, metrics=f"{url}metrics")
        return cls(state, server, float(run.live_linger_s))

    def finish(self, manifest_json: dict) -> None:
        self.state.finish(manifest_json)

    def close(self, log: EventLog, finished: bool) -> None:
        """After a finished run, serve until /metrics is scraped with the final counts (at most
        `run.live_linger_s`); then stop, and say what serving cost (the server thread's CPU time)."""
        scraped = None
        if finished and self.linger_s > 0:
            scraped = self.server.linger(self.linger_s)
        self.server.stop()
        lingered = "" if scraped is None else \
            f"final figures {'scraped' if scraped else f'not scraped (waited {self.linger_s:g} s)'}; "
        log.say(f"live page: {lingered}stopped after {self.server.requests} requests, "
                f"{self.server.cpu_s:.2f} s of CPU on its thread", "live_page_closed", final_scraped=scraped,
                requests=self.server.requests, server_cpu_s=round(self.server.cpu_s, 3))
