"""Generate dvc.yaml from the Snakemake workflow, so the two can never disagree about the graph.

One DVC stage per rules/<stage>.smk file (rules/common.smk, shared by all, is none). A stage's
command runs only its own rules through Snakemake: --allowed-rules, because Snakemake keeps its own
staleness records in .snakemake/ and, after DVC restored an upstream stage from its run cache, would
rerun that stage's rule and overwrite outputs DVC owns; --forcerun, because a dependency only DVC
knows about would otherwise get "Nothing to be done" and DVC would record a run that did not happen.
Its deps are the rules' inputs made by other stages or
by hand, the .smk file and rules/common.smk, the scripts the rules call and every selfalign module
those scripts import (DVC cannot see imports); its params are exactly the keys the rules pass to
their scripts through ParamsSlice; its outs are the non-temp outputs,
with metrics/ and plots/ files declared as DVC metrics and plots.

It also writes the DVC plot templates and the offline HTML page of `dvc plots show` (selfalign/workflow/plot_templates.py).

    python -m selfalign.workflow.dvcgen           # rewrite dvc.yaml and .dvc/plots/
    python -m selfalign.workflow.dvcgen --check   # exit 1 if any of them is stale (the tests run this)
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import sys
from pathlib import Path

import yaml

from selfalign.core.config import ParamsSlice, get_key, load_params
from selfalign.core.stage import CHECK_STAGE

ROOT = Path(__file__).resolve().parents[2]
HEADER = "# Generated from the Snakemake rules by `python -m selfalign.workflow.dvcgen`: edit rules/*.smk, not this file.\n"
# --nolock: DVC holds the repository's lock for the whole `dvc repro`, so Snakemake's own lock adds
# nothing, and a killed run would leave it behind to block the next one. --rerun-incomplete: a job
# killed mid-way is simply run again (its journal keeps the finished batches).
SNAKEMAKE = "snakemake --cores all --quiet progress rules --nolock --rerun-incomplete"
# The human-written alignment text is tracked as params (its top-level keys), not as file deps, so
# `dvc params diff` names the edited entry (principles.4.text) instead of just "file modified". The
# `check` stage alone reads them as plain files: DVC cannot hash params it cannot sort (keys "6" and 6
# in one file), and the check stage is where such a file must be reported.
PARAMS_FILES = "principles/"
# What several rules share (config, EVAL_DATA, TORCHRUN, ...): a dependency of every stage, a stage of none.
COMMON = "rules/common.smk"
# How DVC draws each plots/ file (`dvc plots show`); a plots file not listed gets DVC's defaults. The
# bar_ci and bar_ordered templates are this repository's (.dvc/plots/, written by selfalign/workflow/plot_templates.py).
PLOTS = {
    "plots/principle_citations.csv": {"template": "bar_ordered", "x": "citations", "y": "principle",
                                      "title": "How often kept answers cite each principle"},
    "plots/eval.csv": {"template": "bar_ci", "x": "value", "y": "task (checkpoint)",
                       "title": "Eval per task and checkpoint: 95% intervals, chance in red"},
    "plots/engrave_loss.csv": {"x": "step", "y": "loss", "title": "Principle engraving: training loss"},
    "plots/verbose_clone_loss.csv": {"x": "step", "y": "loss", "title": "Verbose cloning: training loss"},
}


def load_rules(root: Path = ROOT) -> list:
    """The workflow's rules, in definition order (Snakemake's Python API)."""
    import snakemake.api as api
    from snakemake.settings.types import OutputSettings, ResourceSettings

    with api.SnakemakeApi(OutputSettings(quiet={"all"})) as sm:
        wf = sm.workflow(resource_settings=ResourceSettings(cores=1), snakefile=root / "Snakefile", workdir=root)
        # The public API runs workflows; reading rule definitions needs the workflow object itself.
        return list(wf._workflow.rules)


def imported_modules(tree: ast.AST, module: str, is_package: bool = False) -> set[str]:
    """Every module name an import statement in `tree` may load, all forms resolved: `import a.b`,
    `from a import b` (b a module or a name in a), relative imports at any depth. `module`: the dotted
    name of the file the tree is from (its package anchors the relative ones)."""
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level \
                else node.module
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
    return names


def _source(name: str, root: Path) -> Path | None:
    """The file of module `name` under `root`, or None when it is not one (a name inside a module)."""
    rel = Path(*name.split("."))
    for cand in (root / rel.with_suffix(".py"), root / rel / "__init__.py"):
        if cand.exists():
            return cand
    return None


def module_deps(script: Path, root: Path = ROOT, package: str = "selfalign") -> list[str]:
    """The `package` modules `script` imports, transitively, with the __init__.py of every package on
    the way (Python runs those too): paths relative to `root`."""
    seen: set[Path] = set()
    todo = [script.resolve()]
    while todo:
        path = todo.pop()
        rel = path.relative_to(root.resolve()) if path.is_relative_to(root.resolve()) else Path(path.name)
        is_package = rel.name == "__init__.py"
        module = ".".join((rel.parent if is_package else rel.with_suffix("")).parts)
        for name in imported_modules(ast.parse(path.read_text(), filename=str(path)), module, is_package):
            parts = name.split(".")
            if parts[0] != package:
                continue
            for i in range(1, len(parts) + 1):  # a.b.c loads a, a.b and a.b.c
                cand = _source(".".join(parts[:i]), root)
                if cand is not None and cand.resolve() not in seen:
                    seen.add(cand.resolve())
                    todo.append(cand.resolve())
    return sorted(str(p.relative_to(root.resolve())) for p in seen)


def _produced_by(rules, path: str) -> bool:
    return any(r.is_producer(path) for r in rules)


def build_stages(rules, params: dict, root: Path = ROOT) -> dict:
    by_file: dict[str, list] = {}
    for r in rules:
        smk = Path(r.snakefile).resolve()
        if smk.parent == (root / "rules").resolve() and smk.name != Path(COMMON).name:
            by_file.setdefault(str(smk.relative_to(root.resolve())), []).append(r)
    stages = {}
    for smk, srules in by_file.items():
        names = [r.name for r in srules]
        deps, outs, metrics, plots, keys, scripts = [smk, COMMON], [], [], [], [], []
        files: dict[str, list[str]] = {}
        for r in srules:
            for f in r.input:
                f = str(f)
                if f.startswith(PARAMS_FILES) and f.endswith((".yaml", ".yml")) and Path(smk).stem != CHECK_STAGE:
                    files.setdefault(f, list(yaml.safe_load((root / f).read_text()) or {}))
                elif not _produced_by(srules, f) and f not in deps:
                    deps.append(f)
            for f in r.output:
                if f.flags.get("temp") or r.wildcard_names:
                    continue
                (metrics if f.startswith("metrics/") else plots if f.startswith("plots/") else outs).append(str(f))
            for _, v in r.params.items():
                if isinstance(v, ParamsSlice):
                    keys += [k for k in v.keys if k not in keys]
            # The scripts a rule runs, and the project modules it runs with `python -m` (the training launcher).
            run = re.findall(r"scripts/[\w/]+\.py", r.shellcmd or "") + [
                m.replace(".", "/") + ".py" for m in re.findall(r"-m (selfalign(?:\.\w+)+)", r.shellcmd or "")]
            scripts += [s for s in run if s not in scripts]
        for key in keys:
            get_key(params, key)  # DVC fails on a params key that params.yaml lacks; fail here first
        for s in scripts:
            deps += [d for d in [s, *module_deps(root / s, root)] if d not in deps]
        targets = outs + metrics + plots
        stage = {
            "cmd": f"{SNAKEMAKE} --allowed-rules {' '.join(names)} --forcerun {' '.join(names)} -- {' '.join(targets)}",
            "deps": deps,
        }
        if keys or files:
            stage["params"] = keys + [{f: k} for f, k in files.items()]
        if outs:
            stage["outs"] = outs
        if metrics:
            stage["metrics"] = [{m: {"cache": False}} for m in metrics]
        if plots:
            stage["plots"] = [{p: {"cache": False, **PLOTS.get(p, {})}} for p in plots]
        stages[Path(smk).stem] = stage
    if CHECK_STAGE in stages:  # it runs before every other stage: list it first
        stages = {CHECK_STAGE: stages.pop(CHECK_STAGE), **stages}
    return stages


def render(root: Path = ROOT) -> str:
    stages = build_stages(load_rules(root), load_params(root / "params.yaml"), root)
    return HEADER + yaml.safe_dump({"stages": stages}, sort_keys=False, width=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Generate dvc.yaml from the Snakemake rules.")
    ap.add_argument("--check", action="store_true", help="only check that dvc.yaml is up to date")
    ap.add_argument("--root", type=Path, default=ROOT)
    a = ap.parse_args(argv)
    from selfalign.workflow.plot_templates import files

    outputs = {"dvc.yaml": render(a.root)} | files()
    if a.check:
        stale = [rel for rel, text in outputs.items()
                 if not (a.root / rel).exists() or (a.root / rel).read_text(encoding="utf-8") != text]
        for rel in stale:
            print(f"{a.root / rel} is out of date with the Snakemake rules and selfalign/workflow/plot_templates.py: "
                  "run `python -m selfalign.workflow.dvcgen`", file=sys.stderr)
        return 1 if stale else 0
    for rel, text in outputs.items():
        path = a.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
