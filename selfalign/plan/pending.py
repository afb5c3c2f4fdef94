"""The stages `dvc repro` would run now: those DVC reports changed, and every stage downstream of one.

The `check` stage is the exception: it reruns whenever a hand-written input changes, but its stamp's bytes
never change (rules/common.smk), so it makes nothing downstream rerun; it is reported apart (`check`).
"""
from __future__ import annotations

from pathlib import Path

from selfalign.data.paths import STAGES

CHECK = "check"


def pending(root: str | Path = ".") -> tuple[list[str], bool]:
    """(the stages that would run, in pipeline order, without `check`; whether `check` would run)."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        changed = {name.split(":")[-1] for name in repo.status()}
        graph = repo.index.graph  # edges: stage -> a stage it depends on
        names = {stage: stage.addressing.split(":")[-1] for stage in graph.nodes}
        run = set()
        for stage, name in names.items():
            if name in changed and name != CHECK:
                run.add(name)
                run |= {names[s] for s in nx.ancestors(graph, stage)}  # ancestors here: the stages that depend on it
    order = {s: i for i, s in enumerate(STAGES)}
    return sorted(run, key=lambda s: (order.get(s, len(order)), s)), CHECK in changed
