"""Record-level lineage: follow `parent_ids` from any record back to the human-written seeds.

DVC knows which file came from which; every record also names its parents, so a training example
(an aligned or verbose answer) leads to its query, the query to its topic or seed instructions, the
topic to its red-teaming question type.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from selfalign.core.files import InputError, read_jsonl
from selfalign.data.paths import RECORD_FILES

TEXT_FIELDS = ("answer", "query", "topic", "instruction", "name")


@dataclass
class Node:
    id: str
    file: str
    record: dict

    @property
    def stage(self) -> str:
        return self.record.get("stage", "seed")

    @property
    def text(self) -> str:
        return next((str(self.record[f]) for f in TEXT_FIELDS if self.record.get(f)), "")

    @property
    def parents(self) -> list[str]:
        return list(self.record.get("parent_ids") or [])


class Index:
    def __init__(self, root: str | Path = "."):
        self.root = Path(root)
        self.nodes: dict[str, Node] = {}
        for rel in RECORD_FILES.values():
            path = self.root / rel
            if not path.exists():
                continue
            for r in read_jsonl(path, required=("id",), allow_empty=True):
                self.nodes.setdefault(r["id"], Node(r["id"], rel, r))
        self.revision = git_revision(self.root)
        self.file_hashes = _dvc_hashes(self.root)

    def get(self, rid: str) -> Node:
        if rid not in self.nodes:
            raise InputError(f"no record with id {rid!r} in {', '.join(f for f in RECORD_FILES.values() if (self.root / f).exists())}")
        return self.nodes[rid]

    def chain(self, rid: str) -> list[tuple[int, Node]]:
        """(depth, node) from `rid` back to its seeds, depth-first. Raises InputError on an orphan or a cycle."""
        out: list[tuple[int, Node]] = []

        def walk(node_id: str, depth: int, path: tuple[str, ...]) -> None:
            if node_id in path:
                raise InputError(f"lineage cycle: {' -> '.join(path + (node_id,))}")
            if node_id not in self.nodes:
                raise InputError(f"orphan: {path[-1]} names parent {node_id!r}, which no record file holds")
            node = self.nodes[node_id]
            out.append((depth, node))
            for p in node.parents:
                walk(p, depth + 1, path + (node_id,))

        walk(self.get(rid).id, 0, ())
        return out

    def describe(self, node: Node) -> dict:
        r = node.record
        info = {"id": node.id, "stage": node.stage, "file": node.file, "text": node.text,
                "parent_ids": node.parents, "file_md5": self.file_hashes.get(node.file), "git_revision": self.revision}
        for key in ("model", "decoding", "engine", "template_hash", "principles_version", "cited", "reason"):
            if key in r:
                info[key] = r[key]
        return info


def git_revision(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    except FileNotFoundError:
        return None
    return out.stdout.strip() or None


def _dvc_hashes(root: Path) -> dict[str, str]:
    """md5 of each stage output as dvc.lock records it (the version DVC can restore)."""
    lock = root / "dvc.lock"
    if not lock.exists():
        return {}
    hashes = {}
    for stage in (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).values():
        for out in stage.get("outs", []) + stage.get("deps", []):
            if "md5" in out:
                hashes[out["path"]] = out["md5"]
    return hashes


def shorten(text: str, width: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."
