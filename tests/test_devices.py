"""GPUs of a job (selfalign/engine/devices.py): each generation job takes GPUs of its own. Tested with GPU ids
that name no device: the claim is the same code a GPU job runs, before anything touches CUDA."""
import json
import os
import re
import subprocess
import sys
import time

import pytest
import yaml

from selfalign.core.files import InputError
from selfalign.engine import devices

from conftest import ROOT


def test_visible_gpus_read_cuda_visible_devices_as_cuda_does():
    assert devices.visible_gpus({"CUDA_VISIBLE_DEVICES": "0,1, 3"}) == ["0", "1", "3"]
    assert devices.visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-8e1f,GPU-77a2"}) == ["GPU-8e1f", "GPU-77a2"]
    assert devices.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert devices.visible_gpus({"CUDA_VISIBLE_DEVICES": "2,-1,3"}) == ["2"]  # CUDA stops at an invalid entry


def test_a_job_asking_for_more_gpus_than_it_sees_is_told_which_setting(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(InputError, match=r"generation.gpus_per_shard=2, but this job sees 1 GPU"):
        devices.claim(2, setting="generation.gpus_per_shard")
    assert devices.claim(0, setting="generation.gpus_per_shard") == [] and os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    # A machine without GPUs runs the job on its CPUs, as with the setting at 0 (a profile's GPUs on a CPU node).
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert devices.claim(1, setting="generation.gpus_per_shard") == [] and os.environ["CUDA_VISIBLE_DEVICES"] == ""


def test_a_job_given_exactly_its_gpus_takes_them_without_locks(monkeypatch, tmp_path):
    # SLURM's --gpus: the job sees its own GPUs only.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,6")
    monkeypatch.setenv(devices.LOCKS, str(tmp_path / "locks"))
    assert devices.claim(2, setting="generation.gpus_per_shard") == ["5", "6"]
    assert not (tmp_path / "locks").exists()


HOLD = """
import sys, time
from selfalign.engine import devices
print(",".join(devices.claim(int(sys.argv[1]), setting="generation.gpus_per_shard")), flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_a_job_waits_while_the_gpus_are_held_and_takes_them_when_freed(monkeypatch, tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="0,1,2", **{devices.LOCKS: str(tmp_path)})
    holder = subprocess.Popen([sys.executable, "-c", HOLD, "2", "3"], env=env, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "0,1"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    monkeypatch.setenv(devices.LOCKS, str(tmp_path))
    start = time.monotonic()
    got = devices.claim(2, setting="generation.gpus_per_shard", poll_s=0.1)
    waited = time.monotonic() - start
    holder.wait()
    assert got == ["0", "1"] and os.environ["CUDA_VISIBLE_DEVICES"] == "0,1" and waited > 1.0
    # The holder was never killed by hand: its locks went with its process.
    devices._held.clear()


@pytest.mark.slow
def test_two_shard_jobs_run_at_once_on_disjoint_gpus(tiny_materialized, tmp_path):
    """The topics stage's real shard script, two shards started together on a node with two (named) GPUs and
    one GPU per shard: each takes its own, so they run side by side."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    p = {"seed": 7, "model": {"inference_dtype": "float32"},
         "generation": params["generation"] | {"backend": "transformers", "batch_size": 4, "shards": 2},
         "topics": params["topics"] | {"decoding": params["topics"]["decoding"] | {"max_new_tokens": 4}, "max_rounds": 1}}
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="0,1", **{devices.LOCKS: str(tmp_path / "locks")})
    jobs = [subprocess.Popen([sys.executable, str(ROOT / "scripts/generate_topics.py"), "--model", str(tiny_materialized),
                              "--types", str(ROOT / "data/seeds/red_team_types.jsonl"),
                              "--template", str(ROOT / "templates/topics.j2"), "--params", json.dumps(p),
                              "--gpus", "1", "--shard", str(s), "--out", str(tmp_path / f"{s:03d}.jsonl"),
                              "--journal-dir", str(tmp_path / "journal")],
                             env=env, stderr=subprocess.PIPE, text=True) for s in (0, 1)]
    logs = [j.communicate(timeout=600)[1] for j in jobs]
    assert [j.returncode for j in jobs] == [0, 0], logs
    taken = [re.findall(r"computing on GPU\(s\) (\S+)", log) for log in logs]
    # Had the second started after the first ended, it would have found GPU 0 free and taken it too.
    assert sorted(t[0] for t in taken if t) == ["0", "1"], logs
    assert all((tmp_path / f"{s:03d}.jsonl").stat().st_size for s in (0, 1))


@pytest.mark.parametrize("gpus_per_shard,visible,cores", [(1, "0,1,2,3", 2), (2, "0,1,2,3", 4), (0, "", 8)])
def test_generation_jobs_with_gpus_share_the_cores_and_run_at_once(monkeypatch, gpus_per_shard, visible, cores):
    """rules/common.smk: on a node of 4 visible GPUs, 4 one-GPU shards run at once and each takes a quarter of
    the cores (two-GPU shards: two at once, half each); on CPU each generation job takes them all."""
    import snakemake.api as api
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    override = ConfigSettings(config={"generation": {"gpus_per_shard": gpus_per_shard, "shards": 4}})
    with api.SnakemakeApi(OutputSettings(quiet={"all"})) as sm:
        wf = sm.workflow(resource_settings=ResourceSettings(cores=8), config_settings=override,
                         snakefile=ROOT / "Snakefile", workdir=ROOT)
        rules = {r.name: r for r in wf._workflow.rules}
    for name in ("generate_topics", "generate_queries", "generate_aligned", "generate_verbose", "generate_eval_answers"):
        assert rules[name].resources["_cores"] == cores and rules[name].resources["gpu"] == gpus_per_shard
