"""Stage `verbose`, one shard: the engraved model, told to be detailed, answers the aligned queries.

    python scripts/generate_verbose.py --model models/engraved --aligned data/aligned/aligned.jsonl --shard 0 \
        --template templates/verbose.j2 --params "$(python -m selfalign.core.config seed generation align verbose)" \
        --out data/verbose/shards/000.jsonl
"""
from selfalign.core import stage
from selfalign.core.config import parse_slice
from selfalign.core.files import read_jsonl
from selfalign.data.templates import Template
from selfalign.engine import shards
from selfalign.stages import verbose


def main() -> None:
    a = shards.parse_args(shards.shard_parser(__doc__.splitlines()[0], "--model", "--aligned", "--template", journal="verbose"))
    p = parse_slice(a.params)
    items = verbose.build_items(read_jsonl(a.aligned, required=("id", "query")), Template(a.template),
                                assistant=p["align"]["assistant_name"], instruction=p["verbose"]["instruction"])
    shards.generate_shard(items, a, p, decoding="verbose.decoding", stop=verbose.STOP,
                         blame=lambda key: f"{a.aligned} (id={key}) with verbose.instruction in {a.template}")


if __name__ == "__main__":
    stage.run(main)
