"""Stage `eval`, one shard: the teacher (the base model with the principles and exemplars in its prompt)
answers the engraving-fidelity prompts: XSTest's and the held-out queries (greedy).

    python scripts/generate_teacher.py --model models/base --queries data/queries/queries.jsonl \
        --principles principles/principles.yaml --exemplars principles/exemplars.yaml --template templates/align.j2 \
        --hhh data/eval/hhh --truthfulqa data/eval/truthfulqa/TruthfulQA.csv \
        --truthfulqa-mc data/eval/truthfulqa_bigbench/task_mc.json --xstest data/eval/xstest/xstest_prompts.csv \
        --params "$(python -m selfalign.core.config seed model.inference_dtype generation principles align eval)" \
        --shard 0 --out data/eval_results/shards/teacher/000.jsonl
"""
from selfalign.core import stage
from selfalign.core.config import parse_slice
from selfalign.core.files import read_jsonl
from selfalign.data import principles
from selfalign.data.eval_sets import eval_questions, load_xstest
from selfalign.data.templates import Template
from selfalign.engine import shards
from selfalign.engine.journal import run_shard, shard_slice
from selfalign.engine.types import Engine
from selfalign.eval import fidelity, xstest
from selfalign.stages import align


def main() -> None:
    a = shards.shard_parser(__doc__.splitlines()[0], "--model", "--queries", "--principles", "--exemplars", "--template",
                           "--hhh", "--truthfulqa", "--truthfulqa-mc", "--xstest", journal="teacher").parse_args()
    p = parse_slice(a.params)
    cfg = p["align"]
    active, exemplars, version = principles.load_alignment_text(a.principles, a.exemplars, p["principles"]["exclude"])
    heldout = fidelity.heldout_queries(read_jsonl(a.queries, required=("id", "query", "source")),
                                       eval_questions(a.hhh, a.truthfulqa, truthfulqa_mc=a.truthfulqa_mc, xstest=a.xstest), p)
    xs = load_xstest(a.xstest, max_prompts=p["eval"]["xstest_prompts"], seed=p["seed"])
    items = align.build_items(fidelity.teacher_queries(fidelity.prompts(xs, heldout)), Template(a.template),
                              assistant=cfg["assistant_name"], identity=cfg["identity"], principles=active,
                              exemplars=exemplars, principles_version=version, rotations=cfg["exemplar_rotations"],
                              seed=p["seed"])
    # Greedy, like the checkpoints' answers it is compared with; long enough for a thought and the answer's opening.
    run_shard(shard_slice(items, a.shard, p["generation"]["shards"]), model_dir=a.model,
              decoding=xstest.decoding(cfg["decoding"]["max_new_tokens"]), seed=p["seed"], engine=Engine.from_params(p),
              out_path=a.out, journal_dir=a.journal_dir, stop=align.stops(cfg["assistant_name"]))


if __name__ == "__main__":
    stage.run(main)
