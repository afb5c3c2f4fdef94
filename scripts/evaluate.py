"""Stage `eval`: score base, engraved and final on HHH and TruthfulQA MC, classify their XSTest answers,
and write every figure with its interval and a paired test against base.

    python scripts/evaluate.py --checkpoints base=models/base engraved=models/engraved final=models/final \
        --hhh data/eval/hhh --truthfulqa data/eval/truthfulqa/TruthfulQA.csv \
        --truthfulqa-mc data/eval/truthfulqa_bigbench/task_mc.json \
        --xstest-shards data/eval_results/shards/xstest/*/*.jsonl \
        --xstest-gold data/eval/xstest/completions_mistral_instruct_labelled.csv \
        --teacher-shards data/eval_results/shards/teacher/*.jsonl --principles principles/principles.yaml \
        --exemplars principles/exemplars.yaml \
        --params "$(python -m selfalign.core.config seed model.inference_dtype principles align.assistant_name eval)" \
        --items data/eval_results/items.jsonl --xstest-out data/eval_results/xstest.jsonl \
        --fidelity-out data/eval_results/fidelity.jsonl \
        --metrics metrics/eval.json --plot plots/eval.csv
"""
import argparse
import gc
from pathlib import Path

from selfalign.core import stage
from selfalign.core.config import parse_slice
from selfalign.core.files import InputError, atomic_open, write_json, write_jsonl
from selfalign.data import eval_sets, principles
from selfalign.data.paths import journal_dir, named_folders
from selfalign.engine import scoring
from selfalign.engine.journal import clear_journals, read_shards
from selfalign.engine.models import inference_dtype, load_model
from selfalign.engine.shards import parse_args, with_gpus
from selfalign.eval import fidelity, multiple_choice, xstest
from selfalign.text import refusal
from selfalign.validation.write import write_validated


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", nargs="+", required=True, help="NAME=FOLDER ...")
    ap.add_argument("--xstest-shards", nargs="+", required=True, help=".../<checkpoint>/<shard>.jsonl ...")
    ap.add_argument("--teacher-shards", nargs="+", required=True, help="generate_eval_answers' teacher shards")
    for flag in ("--hhh", "--truthfulqa", "--truthfulqa-mc", "--xstest-gold", "--principles", "--exemplars", "--params",
                 "--items", "--xstest-out", "--fidelity-out", "--metrics", "--plot"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--rule", default="evaluate")
    ap.add_argument("--journal-dir", default=journal_dir("xstest"))  # generate_eval_answers' journals
    ap.add_argument("--teacher-journal-dir", default=journal_dir("teacher"))
    a = parse_args(with_gpus(ap))
    p = parse_slice(a.params)
    ev, seed = p["eval"], p["seed"]
    n_boot = ev["bootstrap_samples"]
    checkpoints = named_folders(a.checkpoints, "--checkpoints")
    items = (eval_sets.load_hhh(a.hhh, per_category=ev["hhh_per_category"], seed=seed)
             + eval_sets.load_truthfulqa_mc(a.truthfulqa_mc, max_questions=ev["truthfulqa_mc_questions"], seed=seed)
             + eval_sets.load_truthfulqa(a.truthfulqa, max_questions=ev["truthfulqa_questions"], seed=seed))
    reqs = [r for it in items for r in multiple_choice.requests(it, p["align"]["assistant_name"])]
    dtype = inference_dtype(p["model"]["inference_dtype"])

    # XSTest answers, generated per (checkpoint, shard) by generate_eval_answers: classify them first (cheap), so a
    # bad shard stops the stage before minutes of scoring.
    shards: dict[str, list[str]] = {}
    for path in a.xstest_shards:
        shards.setdefault(Path(path).parent.name, []).append(path)
    if set(shards) != set(checkpoints):
        raise InputError(f"--xstest-shards cover checkpoints {sorted(shards)}, --checkpoints {sorted(checkpoints)}")
    rows = {name: read_shards(shards[name]) for name in checkpoints}
    answers = {name: xstest.collect(name, rows[name]) for name in checkpoints}
    gold = eval_sets.load_xstest_gold(a.xstest_gold)
    active, exemplars, _ = principles.load_alignment_text(a.principles, a.exemplars, p["principles"]["exclude"])
    teacher_rows = read_shards(a.teacher_shards)
    teacher = fidelity.teacher_decisions(teacher_rows, assistant=p["align"]["assistant_name"], principles=active,
                                         exemplars=exemplars)
    sets = {r["meta"]["query_id"]: r["meta"]["query_id"].split("/", 1)[0] for r in teacher_rows}
    student = {name: fidelity.decisions(rows[name]) for name in checkpoints}

    metrics, graded = {}, {}
    for i, (name, folder) in enumerate(checkpoints.items(), 1):
        model, tok, manifest = load_model(folder, dtype=dtype)
        scores = scoring.score(model, tok, reqs, prefix_cache=ev["prefix_cache"],
                               desc=f"eval: score {name} ({i}/{len(checkpoints)})")
        graded[name] = multiple_choice.grade(items, scores)
        metrics[name] = multiple_choice.summarize(graded[name], seed=seed, n_boot=n_boot)
        metrics[name]["xstest"] = xstest.summarize(answers[name])
        metrics[name]["fidelity"] = fidelity.agreement(teacher, student[name], sets)
        metrics[name] |= {"model": manifest["id"], "dtype": dtype}
        del model
        gc.collect()
    if "base" in checkpoints:
        for name in checkpoints:
            if name != "base":
                metrics[name]["vs_base"] = multiple_choice.compare_to_base(graded["base"], graded[name], seed=seed, n_boot=n_boot) | {
                    "xstest": xstest.compare_to_base(answers["base"], answers[name], seed=seed, n_boot=n_boot)}
    # The teacher's own behaviour on XSTest: what the principles did, before any engraving.
    # (Labels from a checkpoint's records of the same prompts; the call and whether it finished, the teacher's.)
    by_id = {r["id"]: r for r in answers[next(iter(checkpoints))]}
    metrics["teacher"] = {"xstest": xstest.summarize([by_id[k.split("/", 1)[1]] | {"refusal": t["refusal"], "empty": False,
                                                                                   "finished": t["finished"]}
                                                      for k, t in teacher.items()
                                                      if sets[k] == fidelity.XSTEST and t["refusal"] is not None]),
                          "no_answer": sum(t["refusal"] is None for t in teacher.values()),
                          "heldout_refusal_share": fidelity.refusal_share(teacher, sets, fidelity.HELDOUT)}
    report = refusal.agreement_report(gold)
    metrics["refusal_detector"] = {"all": report["all"], "held_out": report["held out (even ids)"]}

    write_jsonl(a.items, [g | {"checkpoint": name} for name, rows in graded.items() for g in rows])
    write_validated(a.xstest_out, [r for rows in answers.values() for r in rows], dataset="xstest_answers", rule=a.rule)
    write_validated(a.fidelity_out, fidelity.records(teacher_rows, teacher, student), dataset="fidelity_decisions",
                    rule=a.rule)
    write_json(a.metrics, metrics)
    with atomic_open(a.plot) as f:
        f.write(multiple_choice.plot_csv(metrics, items, list(checkpoints)))
    clear_journals(a.journal_dir)
    clear_journals(a.teacher_journal_dir)


if __name__ == "__main__":
    stage.run(main)
