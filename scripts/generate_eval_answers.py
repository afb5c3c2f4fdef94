"""Stage `eval`, one shard: the answers the behaviour eval classifies, with one engine for all of them. The
teacher (base with the principles and exemplars in its prompt: the align stage's prompt) answers the
engraving-fidelity prompts, XSTest's and the held-out queries; then each checkpoint, prompted without them,
answers the same prompts (greedy, dialogue format), its weights loaded into the engine in turn.

    python scripts/generate_eval_answers.py --checkpoints base=models/base engraved=models/engraved final=models/final \
        --queries data/queries/queries.jsonl --principles principles/principles.yaml \
        --exemplars principles/exemplars.yaml --template templates/align.j2 --hhh data/eval/hhh \
        --truthfulqa data/eval/truthfulqa/TruthfulQA.csv --truthfulqa-mc data/eval/truthfulqa_bigbench/task_mc.json \
        --xstest data/eval/xstest/xstest_prompts.csv \
        --params "$(python -m selfalign.core.config seed model.inference_dtype generation principles align eval)" \
        --shard 0 --out data/eval_results/shards

writes <out>/teacher/<shard>.jsonl and <out>/xstest/<checkpoint>/<shard>.jsonl (evaluate.py takes a shard's
checkpoint from its folder's name).
"""
import argparse
from pathlib import Path

from selfalign.core import stage
from selfalign.core.config import parse_slice
from selfalign.core.files import InputError, read_jsonl
from selfalign.data import principles
from selfalign.data.eval_sets import eval_questions, load_xstest
from selfalign.data.paths import journal_dir, named_folders
from selfalign.data.templates import Template
from selfalign.engine import limits, shards
from selfalign.engine.backends import SharedEngine
from selfalign.engine.journal import run_shard, shard_slice
from selfalign.engine.types import Engine
from selfalign.eval import fidelity, xstest
from selfalign.stages import align


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", nargs="+", required=True, help="NAME=FOLDER ..., base first (it is the teacher)")
    for flag in ("--queries", "--principles", "--exemplars", "--template", "--hhh", "--truthfulqa", "--truthfulqa-mc",
                 "--xstest", "--params", "--out"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--shard", type=int, required=True)
    ap.add_argument("--journal-dir", default=journal_dir("xstest"))
    ap.add_argument("--teacher-journal-dir", default=journal_dir("teacher"))
    a = shards.parse_args(shards.with_gpus(ap))
    checkpoints = named_folders(a.checkpoints, "--checkpoints")
    if next(iter(checkpoints), None) != "base":
        raise InputError(f"--checkpoints {' '.join(a.checkpoints)}: the first must be base=FOLDER (the teacher's model)")
    p = parse_slice(a.params)
    cfg, n_shards = p["align"], p["generation"]["shards"]
    active, exemplars, version = principles.load_alignment_text(a.principles, a.exemplars, p["principles"]["exclude"])
    heldout = fidelity.heldout_queries(read_jsonl(a.queries, required=("id", "query", "source")),
                                       eval_questions(a.hhh, a.truthfulqa, truthfulqa_mc=a.truthfulqa_mc, xstest=a.xstest), p)
    prompts = load_xstest(a.xstest, max_prompts=p["eval"]["xstest_prompts"], seed=p["seed"])
    teacher_items = align.build_items(fidelity.teacher_queries(fidelity.prompts(prompts, heldout)), Template(a.template),
                                      assistant=cfg["assistant_name"], identity=cfg["identity"], principles=active,
                                      exemplars=exemplars, principles_version=version,
                                      rotations=cfg["exemplar_rotations"], seed=p["seed"])
    student_items = xstest.build_items(prompts, cfg["assistant_name"]) + fidelity.student_items(heldout, cfg["assistant_name"])
    teacher_items = shard_slice(teacher_items, a.shard, n_shards)
    student_items = shard_slice(student_items, a.shard, n_shards)
    # One engine for both kinds of prompt: sized for the longest of either with its answer.
    tok, base = limits.load_tokenizer(checkpoints["base"]), checkpoints["base"]
    sizes = [limits.model_len(base, limits.check_prompts(items, model_dir=base, max_new_tokens=new, setting=setting,
                                                         blame=shards.default_blame, tokenizer=tok), new)
             for items, new, setting in ((teacher_items, cfg["decoding"]["max_new_tokens"], "align.decoding.max_new_tokens"),
                                         (student_items, p["eval"]["xstest_max_new_tokens"], "eval.xstest_max_new_tokens"))]
    engine = shards.placed(Engine.from_params(p), a, None if None in sizes else max(sizes))
    shared = SharedEngine(engine)
    shard = f"{a.shard:03d}.jsonl"
    # Greedy, like the checkpoints' answers it is compared with; long enough for a thought and the answer's opening.
    run_shard(teacher_items, model_dir=checkpoints["base"],
              decoding=xstest.decoding(cfg["decoding"]["max_new_tokens"]), seed=p["seed"], engine=engine,
              out_path=Path(a.out) / "teacher" / shard, journal_dir=a.teacher_journal_dir,
              stop=align.stops(cfg["assistant_name"]), shared=shared)
    for name, folder in checkpoints.items():
        run_shard(student_items, model_dir=folder,
                  decoding=xstest.decoding(p["eval"]["xstest_max_new_tokens"]), seed=p["seed"], engine=engine,
                  out_path=Path(a.out) / "xstest" / name / shard, journal_dir=a.journal_dir, stop=xstest.STOP,
                  shared=shared)


if __name__ == "__main__":
    stage.run(main)
