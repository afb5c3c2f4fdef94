"""Stages `engrave` and `verbose_clone`: fine-tune a model on (query, answer) pairs through DeepSpeed.

Run by torchrun, one process per GPU (or several CPU processes on gloo):

    torchrun --standalone --nproc_per_node 2 scripts/train.py --base models/base \
        --data data/aligned/aligned.jsonl --ds-configs configs/deepspeed \
        --params "$(python -m selfalign.core.config seed align.assistant_name train)" \
        --out models/engraved --metrics metrics/engrave.json --plot plots/engrave_loss.csv
"""
import argparse
import os

from selfalign.core import stage
from selfalign.core.config import parse_slice
from selfalign.core.files import InputError, read_jsonl, write_csv, write_json
from selfalign.stages import mix
from selfalign.train.finetune import Settings, data_sha256, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--base", "--data", "--ds-configs", "--params", "--out", "--metrics", "--plot"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--work-dir", default=".selfalign/train")
    a = ap.parse_args()
    p = parse_slice(a.params)
    settings = Settings.from_params(p["train"])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world != settings.processes:
        raise InputError(f"train.processes is {settings.processes} but {world} processes were started")
    records = read_jsonl(a.data, required=("id", "query", "answer"))
    empty = [i for i, r in enumerate(records, 1) if not str(r["answer"]).strip()]
    if empty:
        raise InputError(f"{a.data}: line {empty[0]}: empty answer ({len(empty)} such lines); nothing to learn from")
    metrics = train(base=a.base, records=records, out=a.out, settings=settings, ds_configs=a.ds_configs,
                    assistant=p["align"]["assistant_name"], seed=p["seed"],
                    work_root=os.path.join(a.work_dir, os.path.basename(a.out)), data_hash=data_sha256(records))
    if metrics is None:  # not the main process
        return
    history = metrics.pop("history")
    # The training set's mix by origin: what engraving (or cloning) learned from.
    write_json(a.metrics, metrics | {"mix": mix.counts(records), "refusals": sum(bool(r.get("refusal")) for r in records)})
    write_csv(a.plot, ["step", "loss"], [[h["step"], h["loss"]] for h in history])


if __name__ == "__main__":
    stage.die_with_parent()
    stage.run(main)
