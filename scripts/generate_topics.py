"""Stage `topics`, one shard: the model proposes topics for each red-teaming question type.

    python scripts/generate_topics.py --model models/base --types data/seeds/red_team_types.jsonl \
        --template templates/topics.j2 --params "$(python -m selfalign.core.config seed generation topics)" \
        --shard 0 --out data/topics/shards/000.jsonl
"""
from selfalign.core import stage
from selfalign.core.config import parse_slice
from selfalign.core.files import write_jsonl
from selfalign.data.seeds import load_question_types
from selfalign.data.templates import Template
from selfalign.engine import limits, shards
from selfalign.engine.journal import run_shard, shard_slice
from selfalign.engine.backends import open_backend
from selfalign.engine.types import Decoding, Engine
from selfalign.stages import topics


def main() -> None:
    a = shards.parse_args(shards.shard_parser(__doc__.splitlines()[0], "--model", "--types", "--template", journal="topics"))
    p = parse_slice(a.params)
    t = p["topics"]
    # Sharded by question type, so that each shard sees every generation of its types between rounds.
    types = shard_slice(load_question_types(a.types), a.shard, p["generation"]["shards"])
    decoding, engine = Decoding.from_params(t["decoding"]), Engine.from_params(p)
    opened = []  # one backend (one model load, one engine start) for every round

    def run(items):
        # Each round's prompts are longer (its list goes on from the topics so far): check every round.
        longest = limits.check_prompts(items, model_dir=a.model, max_new_tokens=t["decoding"]["max_new_tokens"],
                                       setting="topics.decoding.max_new_tokens",
                                       tokenizer=opened[0].tokenizer if opened else None,
                                       blame=lambda key: f"{a.types} (id={key.split('#')[0]}) in {a.template}")
        if not opened:
            # The engine holds the first round's prompts and the topics later rounds add to them: fewer than
            # min_per_type kept topics (selfalign/stages/topics.py), each at most max_words words (about 3
            # tokens a word, with its number and newline).
            grows = t["min_per_type"] * (3 * t["max_words"] + 4)
            sized = shards.placed(engine, a, limits.model_len(
                a.model, None if longest is None else longest + grows, t["decoding"]["max_new_tokens"]))
            opened.append(open_backend(a.model, sized))
        return run_shard(items, model_dir=a.model, decoding=decoding, seed=p["seed"], engine=engine, out_path=None,
                         journal_dir=a.journal_dir, stop=topics.STOP, backend=opened[0])

    rows = topics.generate(types, Template(a.template), samples_per_type=t["samples_per_type"],
                           min_per_type=t["min_per_type"], max_rounds=t["max_rounds"], max_words=t["max_words"],
                           threshold=t["rouge_threshold"], run=run)
    write_jsonl(a.out, rows)


if __name__ == "__main__":
    stage.run(main)
