"""A throwaway copy of this repo's pipeline (git + DVC) on a tiny config, for end-to-end tests."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COPY = ["Snakefile", "dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", "rules", "scripts", "selfalign", "schemas",
        "templates", "data/seeds", "data/eval", "configs", "principles", "profiles"]


# What `dvc repro` rewrites among the files git tracks. On another CPU class a run gives other bytes.
RUN_OUTPUTS = ("metrics", "plots", "dvc.lock")


def committed_tree(scratch: Path) -> Path:
    """This repo as committed, for tests that hold the committed README and plan to the committed run: ROOT
    itself, unless a run here rewrote the run's outputs (then HEAD's files, exported into `scratch`). A tree
    that is not a git checkout is taken as it is."""
    try:
        changed = subprocess.run(["git", "status", "--porcelain", "--", *RUN_OUTPUTS], cwd=ROOT, check=True,
                                 capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ROOT
    if not changed:
        return ROOT
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(scratch)], input=archive, check=True)
    return scratch


def tiny_params(model: str) -> dict:
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["model"]["name"] = model
    # transformers: a vLLM engine start per job (~40 s) would triple this pipeline's time; both backends run
    # the same items in tests/test_backends.py, and `make repro` runs the pipeline on vllm.
    p["generation"].update(backend="transformers", batch_size=4, shards=2)
    p["topics"].update(samples_per_type=1, max_per_type=2)
    p["topics"]["decoding"].update(max_new_tokens=24)
    p["queries"].update(self_instruct_prompts=8, questions_per_topic_prompt=1)
    p["queries"]["decoding"].update(max_new_tokens=32)
    # The file's order of the exemplars: under the default 5 rotations SmolLM2 keeps 3 of the 8 answers and the
    # engraved model's 3 long answers all loop past the token limit (at 256 too), leaving verbose nothing to
    # keep. Rotations have their own tests (test_align.py); `make repro` runs them on the default model.
    p["align"].update(max_queries=8, red_team_share=0.5, heldout_queries=2, exemplar_rotations=1)
    p["align"]["decoding"].update(max_new_tokens=128)
    # A 135M model on 8 queries keeps too few answers past the content filters for the later stages to
    # run on; those filters have their own tests on labelled outputs (test_quality.py).
    p["align"]["filters"].update(follows_in_answer=False, repeats_itself=False, contradicts_itself=False,
                                 thought_copies_exemplar=False)
    # One process here: the two-process DeepSpeed path has its own test (test_train.py). fp32 on every CPU class
    # (`auto` is bf16 where the CPU has it): two steps of bf16 LoRA left an engraved SmolLM2 whose 3 long answers
    # all loop past the token limit; bf16 training has its own tests (test_train.py).
    p["train"].update(max_steps=2, batch_size=2, save_steps=2, max_length=128, processes=1, mixed_precision="fp32")
    p["verbose"]["decoding"].update(max_new_tokens=96)  # SmolLM2 runs past 48 tokens mid-sentence
    p["verbose"].update(min_words=3)
    p["eval"].update(truthfulqa_questions=2, hhh_per_category=2, truthfulqa_mc_questions=2, xstest_prompts=4,
                     xstest_max_new_tokens=8, bootstrap_samples=500)
    return p


def copy_pipeline(path: Path, model: str) -> None:
    """This repo's pipeline files, on the tiny config with `model`, into `path`."""
    for name in COPY:
        src, dst = ROOT / name, path / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.invalid.jsonl"))
        else:
            shutil.copy2(src, dst)
    (path / "params.yaml").write_text(yaml.safe_dump(tiny_params(model), sort_keys=False))
    # Four question types are enough to exercise every path and keep the run short.
    types = (path / "data/seeds/red_team_types.jsonl").read_text().splitlines(keepends=True)
    (path / "data/seeds/red_team_types.jsonl").write_text("".join(types[:4]))


class Pipeline:
    def __init__(self, path: Path, model: str):
        self.path = path
        copy_pipeline(path, model)
        self.sh("git", "init", "-q")
        # An identity of the copy's own: `dvc exp run` commits, and a machine may have no git identity set.
        self.sh("git", "config", "user.name", "selfalign tests")
        self.sh("git", "config", "user.email", "tests@selfalign.invalid")
        self.sh("dvc", "init", "-q")
        # This repository's DVC settings: the offline page and plot templates of `dvc plots show`.
        shutil.copy2(ROOT / ".dvc/config", path / ".dvc/config")
        shutil.copytree(ROOT / ".dvc/plots", path / ".dvc/plots")
        self.sh("git", "add", "-A")
        self.sh("git", "commit", "-qm", "pipeline copy")

    @property
    def params(self) -> dict:
        return yaml.safe_load((self.path / "params.yaml").read_text())

    def set_params(self, params: dict) -> None:
        (self.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def commit(self, message: str) -> None:
        self.sh("git", "commit", "-qam", message)

    # Extra environment for every command (e.g. SNAKEMAKE_PROFILE for a run on SLURM).
    extra_env: dict = {}

    def env(self) -> dict:
        env = dict(os.environ) | self.extra_env
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
        return env

    def sh(self, *cmd: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        p = subprocess.run(cmd, cwd=self.path, env=self.env() | (env or {}), capture_output=True, text=True)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p

    def start(self, *cmd: str, output=subprocess.DEVNULL) -> subprocess.Popen:
        """Run `cmd` in the background in its own process group (so a test can kill all of it at once)."""
        return subprocess.Popen(cmd, cwd=self.path, env=self.env(), stdout=output,
                                stderr=subprocess.STDOUT if output is not subprocess.DEVNULL else output,
                                start_new_session=True)

    def repro(self, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        return self.sh("dvc", "repro", *args, check=check, env=env)

    def declared(self, *names: str) -> list[str]:
        """The outputs (outs, metrics, plots) that the named DVC stages declare (default: every stage)."""
        stages = yaml.safe_load((self.path / "dvc.yaml").read_text())["stages"]
        return [next(iter(o)) if isinstance(o, dict) else o for name, s in stages.items() if not names or name in names
                for kind in ("outs", "metrics", "plots") for o in s.get(kind, [])]

    def outputs(self, *stages: str) -> dict[str, str]:
        """Every file the DVC stages declare (folders walked) -> its sha256 (no stage writes wall-clock
        times, so two runs of the same work compare equal byte for byte). Default: every stage's."""
        declared = self.declared(*stages)
        files = sorted(f for d in declared for f in ([self.path / d] if (self.path / d).is_file()
                                                      else (self.path / d).rglob("*")) if f.is_file())
        return {str(f.relative_to(self.path)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}

    @staticmethod
    def ran(p: subprocess.CompletedProcess) -> list[str]:
        """Names of the stages a `dvc repro` actually ran."""
        return [line.split("'")[1] for line in p.stdout.splitlines() if line.startswith("Running stage")]

