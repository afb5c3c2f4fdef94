"""Stage `check`: every hand-written input checked before any stage that reads it runs (and so before DVC
removes that stage's outputs); writes a stamp that every other stage depends on.

    python scripts/check_inputs.py --params params.yaml --seeds data/seeds/self_instruct.jsonl \
        --types data/seeds/red_team_types.jsonl --principles principles/principles.yaml \
        --exemplars principles/exemplars.yaml --topics-template templates/topics.j2 \
        --self-instruct-template templates/self_instruct.j2 --red-team-template templates/red_team_questions.j2 \
        --align-template templates/align.j2 --verbose-template templates/verbose.j2 --hhh data/eval/hhh \
        --truthfulqa data/eval/truthfulqa/TruthfulQA.csv --truthfulqa-mc data/eval/truthfulqa_bigbench/task_mc.json \
        --xstest data/eval/xstest/xstest_prompts.csv \
        --xstest-gold data/eval/xstest/completions_mistral_instruct_labelled.csv --ds-configs configs/deepspeed \
        --out data/checked.txt
"""
import argparse

from selfalign.core import stage
from selfalign.core.files import atomic_open
from selfalign.stages import checks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--params", "--seeds", "--types", "--principles", "--exemplars", "--topics-template",
                 "--self-instruct-template", "--red-team-template", "--align-template", "--verbose-template", "--hhh",
                 "--truthfulqa", "--truthfulqa-mc", "--xstest", "--xstest-gold", "--ds-configs", "--out"):
        ap.add_argument(flag, required=True)
    a = ap.parse_args()
    checks.check_inputs(
        params=a.params, seeds=a.seeds, types=a.types, principles=a.principles, exemplars=a.exemplars,
        templates={"topics": a.topics_template, "self_instruct": a.self_instruct_template,
                   "red_team_questions": a.red_team_template, "align": a.align_template, "verbose": a.verbose_template},
        hhh=a.hhh, truthfulqa=a.truthfulqa, truthfulqa_mc=a.truthfulqa_mc, xstest=a.xstest,
        xstest_gold=a.xstest_gold, ds_configs=a.ds_configs)
    with atomic_open(a.out) as f:
        f.write(checks.STAMP_TEXT)


if __name__ == "__main__":
    stage.run(main)
