"""Stage `check`: every hand-written input is checked before any stage that reads it runs.

DVC removes a stage's outputs before it runs the stage's command, so a check inside a stage comes
too late to keep them (a bad `seed` would empty data/topics/, a bad `model.name` delete models/base).
The `check` stage runs first instead: every other stage depends on its stamp (`STAMP_TEXT`, the
same bytes whenever the inputs are valid, so it never makes another stage rerun). It reads
params.yaml and principles/*.yaml as plain files, not as DVC params, because DVC cannot even hash a
principles file whose keys mix "6" and 6. It checks what the stages would otherwise find out only
after their outputs are gone: params against the schema, `model.name`, the seeds, the principles,
the exemplars and `principles.exclude`, every template (rendered once with real inputs), the
evaluation files and the DeepSpeed config. Each problem is one error line naming the file and the
line or key.

What it cannot check is left to the stages (prompt lengths need the model's tokenizer, made by the
`model` stage); when one of those fails under DVC, its error says that `dvc checkout` restores the
outputs DVC removed (stage.dvc_note).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from selfalign.core.files import InputError

STAMP_TEXT = "every hand-written input passed scripts/check_inputs.py\n"
EXAMPLE_QUERY = "What is a good way to start learning to cook?"


def check_model(model: dict) -> None:
    """What the `model` stage would refuse, found without touching models/base."""
    from selfalign.engine.models import EMBEDDED, materialize

    name, trust = model["name"], model.get("trust_remote_code", False)
    if name in EMBEDDED:
        return
    folder = Path(name).expanduser()
    if folder.is_dir():
        # The model stage loads this config with transformers; here it is read as JSON (transformers
        # takes seconds to import), which catches what a user can get wrong: no config, broken JSON, custom code.
        path = folder / "config.json"
        if not path.is_file():
            raise InputError(f"params.yaml: model.name={name}: folder has no config.json (not a Hugging Face model folder)")
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"params.yaml: model.name={name!r}: {path} is not valid JSON ({e})") from None
        if not isinstance(config, dict):
            raise InputError(f"params.yaml: model.name={name!r}: {path} is not a JSON object")
        if config.get("auto_map") and not trust:
            raise InputError(f"params.yaml: model.name={name!r}: the model needs its own Python code (auto_map in "
                             "its config.json); set model.trust_remote_code: true only if you trust that code")
        return
    # A hub id or a name that is none of these: what the model stage does, into a throwaway folder.
    with tempfile.TemporaryDirectory() as tmp:
        materialize(name, tmp, dtype=model.get("dtype", "float32"), trust_remote_code=trust)


def check_templates(params: dict, *, seeds: list[dict], types: list[dict], principles: list, exemplars: list,
                    templates: dict[str, str]) -> None:
    """Render every template once with real inputs, so a template error stops here, not mid-stage."""
    from selfalign.data.templates import Template
    from selfalign.stages import align, queries, topics, verbose

    topics.build_items(types, Template(templates["topics"]), 1)
    example_topics = [{"id": f"tp-example-{t['id']}", "type_id": t["id"], "topic": "an example topic"} for t in types]
    queries.build_items(seeds, types, example_topics, Template(templates["self_instruct"]),
                        Template(templates["red_team_questions"]), self_instruct_prompts=1,
                        demos_per_prompt=params["queries"]["demos_per_prompt"], questions_per_topic_prompt=1,
                        seed=params["seed"])
    a = params["align"]
    align.render_context(Template(templates["align"]), assistant=a["assistant_name"], identity=a["identity"],
                         principles=principles, exemplars=exemplars, query=EXAMPLE_QUERY)
    verbose.build_items([{"id": "a-example", "query": EXAMPLE_QUERY}], Template(templates["verbose"]),
                        assistant=a["assistant_name"], instruction=params["verbose"]["instruction"])


def check_ds_config(folder: str | Path, stage: int, offload: str = "none") -> None:
    """The DeepSpeed config train.zero_stage and train.offload make, as the training stages read it."""
    from selfalign.train.finetune import deepspeed_config

    try:
        deepspeed_config(folder, stage, offload)
    except json.JSONDecodeError as e:
        raise InputError(f"{Path(folder) / f'zero{stage}.json'}:{e.lineno}: not valid JSON ({e.msg}, column {e.colno})") from None


def check_inputs(*, params: str | Path, seeds: str | Path, types: str | Path, principles: str | Path,
                 exemplars: str | Path, templates: dict[str, str], hhh: str | Path, truthfulqa: str | Path,
                 truthfulqa_mc: str | Path, xstest: str | Path, xstest_gold: str | Path, ds_configs: str | Path) -> None:
    """Raise InputError on the first bad input, in the order the stages read them."""
    from selfalign.core.config import load_params
    from selfalign.data import principles as principles_mod
    from selfalign.data.eval_sets import eval_questions, load_xstest_gold
    from selfalign.data.seeds import load_question_types, load_self_instruct

    p = load_params(params)
    check_model(p["model"])
    seed_records = load_self_instruct(seeds)
    type_records = load_question_types(types)
    active, exemplar_records, _ = principles_mod.load_alignment_text(principles, exemplars, p["principles"]["exclude"])
    rotations = p["align"]["exemplar_rotations"]
    if rotations > len(exemplar_records):
        raise InputError(f"params.yaml: align.exemplar_rotations={rotations}, but {exemplars} has "
                         f"{len(exemplar_records)} exemplars (one rotation per exemplar at most)")
    check_templates(p, seeds=seed_records, types=type_records, principles=active, exemplars=exemplar_records,
                    templates=templates)
    eval_questions(hhh, truthfulqa, truthfulqa_mc=truthfulqa_mc, xstest=xstest)
    load_xstest_gold(xstest_gold)
    check_ds_config(ds_configs, p["train"]["zero_stage"], p["train"]["offload"])
    g, t = p["generation"], p["train"]
    if g["gpus_per_shard"] and g["tensor_parallel_size"] > g["gpus_per_shard"]:
        raise InputError(f"params.yaml: generation.tensor_parallel_size={g['tensor_parallel_size']} spans more GPUs "
                         f"than each shard job takes (generation.gpus_per_shard={g['gpus_per_shard']}); set them equal")
    if t["processes"] % t["nodes"]:
        raise InputError(f"params.yaml: train.processes={t['processes']} is not a multiple of train.nodes={t['nodes']}"
                         " (each node runs train.processes / train.nodes processes)")
