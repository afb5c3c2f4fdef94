"""The tiny pipeline on a real SLURM, through the DVC front door and profiles/slurm exactly as the README
shows: a single-node cluster on this machine (tools/slurm-local.sh: munged, slurmctld, slurmd, slurmdbd
on MariaDB), every Snakemake job a SLURM job, one generation shard scancel'ed mid-way and resumed by the
next `dvc repro`, and every output equal to the same pipeline run locally (the session's tiny_pipeline).

Skipped, with the reason, where SLURM is not installed or this is not root (.ci/run installs it).
"""
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from pipeline import ROOT, Pipeline

SCRIPT = ROOT / "tools/slurm-local.sh"
PROFILE = "profiles/slurm"
NEEDED = ("slurmctld", "slurmd", "slurmdbd", "sbatch", "sacct", "munged", "mariadbd")
GENERATION = ("generate_topics", "generate_queries", "generate_aligned", "generate_verbose")
TRAINING = ("engrave", "verbose_clone")
LAST = TRAINING[-1]


def _unavailable() -> str | None:
    missing = [b for b in NEEDED if shutil.which(b) is None]
    if missing:
        return (f"no SLURM on this machine (missing {', '.join(missing)}); .ci/run installs it: apt-get install "
                "slurmctld slurmd slurm-client slurmdbd munge mariadb-server (see tools/slurm-local.sh)")
    if os.geteuid() != 0:
        return "starting a local SLURM (tools/slurm-local.sh) needs root"
    return None


# Decided at collection, before any fixture runs (the local pipeline run takes minutes).
pytestmark = pytest.mark.skipif(_unavailable() is not None, reason=str(_unavailable()))


@pytest.fixture(scope="module")
def slurm():
    """A running single-node SLURM; stopped afterwards unless it was already running."""
    was_up = subprocess.run([SCRIPT, "status"], capture_output=True).returncode == 0
    up = subprocess.run([SCRIPT, "start"], capture_output=True, text=True, timeout=600)
    if up.returncode == 2:
        pytest.skip(up.stderr.strip())
    assert up.returncode == 0, f"tools/slurm-local.sh start failed:\n{up.stdout}{up.stderr}"
    yield
    if not was_up:
        subprocess.run([SCRIPT, "stop"], capture_output=True, timeout=300)


def _jobs(cmd: list[str], workdir: Path) -> list[dict]:
    """Rows of a squeue/sacct listing (fields id|comment|state|workdir|...) for jobs run in `workdir`."""
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    keys = ["id", "comment", "state", "workdir", "account", "partition", "tres"]
    return [dict(zip(keys, r)) for r in rows if Path(r[3]) == workdir]


def squeue(workdir: Path) -> list[dict]:
    return _jobs(["squeue", "-h", "-o", "%i|%k|%T|%Z"], workdir)


def sacct(workdir: Path, since: str) -> list[dict]:
    # `since`: this test's start. A green pytest session deletes its temp folder, so the next one reuses the
    # same path, and the accounting database still holds the jobs that earlier runs ran there.
    return _jobs(["sacct", "-X", "-P", "-n", "--starttime", since, "-o",
                  "JobIDRaw,Comment,State,WorkDir,Account,Partition,AllocTRES"], workdir)


@pytest.mark.slow
def _repro_and_cancel_a_queries_shard(p: Pipeline, log: Path) -> dict:
    """`dvc repro` on SLURM; once a queries shard has journaled its first batch, scancel its job. Returns the job."""
    with open(log, "w") as out:
        proc = p.start("dvc", "repro", LAST, output=out)
        try:
            journal = p.path / ".selfalign/journal/queries"
            deadline = time.monotonic() + 1500
            while not any(f.stat().st_size for f in journal.glob("*.jsonl")):
                assert proc.poll() is None, f"dvc repro ended before queries ran:\n{log.read_text()[-5000:]}"
                assert time.monotonic() < deadline, "no finished queries batch within 1500 s"
                time.sleep(0.05)
            running = [j for j in squeue(p.path)
                       if j["comment"].startswith("rule_generate_queries_") and j["state"] == "RUNNING"]
            assert len(running) == 1, running
            subprocess.run(["scancel", running[0]["id"]], check=True)
            assert proc.wait(timeout=600) != 0, "dvc repro succeeded although a shard was cancelled"
            return running[0]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # dvc and its Snakemake (own session, see Pipeline.start)
                proc.wait()


def _check_jobs_ran_as_the_profile_says(p: Pipeline, since: str) -> None:
    """Every generation shard and both trainings ran as SLURM jobs, with the profile's partition, account
    and --gpus; each job's SLURM log is where the profile puts it."""
    profile = yaml.safe_load((ROOT / PROFILE / "config.yaml").read_text())["default-resources"]
    done = {j["comment"]: j for j in sacct(p.path, since) if j["state"] == "COMPLETED"}
    expected = [f"rule_{r}_wildcards_{s}" for r in GENERATION for s in ("000", "001")] + [f"rule_{r}" for r in TRAINING]
    assert not [c for c in expected if c not in done], sorted(done)
    for comment in expected:
        job = done[comment]
        assert job["account"] == profile["slurm_account"] and job["partition"] == profile["slurm_partition"], job
        assert "gres/gpu=1" in job["tres"], job
        rule, _, wildcards = comment.removeprefix("rule_").partition("_wildcards_")
        assert (p.path / "logs/slurm" / f"rule_{rule}" / wildcards / f"{job['id']}.log").is_file(), comment


def _check_same_bytes_as_local(p: Pipeline, tiny_pipeline) -> None:
    stages = [name for name in yaml.safe_load((p.path / "dvc.yaml").read_text())["stages"] if name != "eval"]
    outputs = p.outputs(*stages)
    local = {f: h for f, h in tiny_pipeline.first_outputs.items()
             if any(f == d or f.startswith(f"{d}/") for d in p.declared(*stages))}
    assert set(outputs) == set(local) and len(local) < len(tiny_pipeline.first_outputs)
    differ = sorted(f for f in outputs if outputs[f] != local[f])
    assert not differ, f"outputs differ between the SLURM and the local run: {differ}"


def test_tiny_pipeline_on_slurm_with_a_cancelled_shard_equals_the_local_run(slurm, tiny_pipeline, smollm2_dir,
                                                                           tmp_path_factory, capsys):
    p = Pipeline(tmp_path_factory.mktemp("slurm-pipeline"), str(smollm2_dir))
    # The node has one (stand-in) GPU: shards and trainings ask for it, which the executor plugin turns
    # into `sbatch --gpus=1`. GPU counts are resources only, so the outputs stay the local run's.
    params = p.params
    params["generation"]["gpus_per_shard"] = 1
    params["train"]["gpus"] = 1
    p.set_params(params)
    p.commit("one GPU per shard and per training")
    p.extra_env = {"SNAKEMAKE_PROFILE": PROFILE}

    # 1. A first `dvc repro`, with one queries shard cancelled mid-way: it fails at queries.
    log = p.path.parent / "slurm-repro-1.log"
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    start = time.monotonic()
    victim = _repro_and_cancel_a_queries_shard(p, log)
    first_seconds = time.monotonic() - start
    first = log.read_text()
    assert Pipeline.ran(subprocess.CompletedProcess([], 0, first)) == ["check", "model", "topics", "queries"]
    assert "ERROR: failed to reproduce 'queries'" in first
    shard = victim["comment"].rsplit("_", 1)[1]
    cancelled = {j["id"]: j for j in sacct(p.path, since)}[victim["id"]]
    assert cancelled["state"].startswith("CANCELLED"), cancelled
    # Snakemake let the stage's other jobs finish before it stopped: nothing of this run is left queued.
    deadline = time.monotonic() + 120
    while squeue(p.path):
        assert time.monotonic() < deadline, squeue(p.path)
        time.sleep(1)

    # 2. `dvc repro` again, up to the last training (eval's jobs are submitted as every other rule's are;
    #    the local run tests eval): topics is done, queries resumes from the journal, the rest runs.
    start = time.monotonic()
    again = p.repro(LAST)
    second_seconds = time.monotonic() - start
    assert Pipeline.ran(again) == ["queries", "align", "engrave", "verbose", "verbose_clone"]
    assert "batches already done" in (p.path / f"logs/queries/{shard}.log").read_text()
    assert p.sh("dvc", "status", LAST).stdout.strip() == "Data and pipelines are up to date."

    _check_jobs_ran_as_the_profile_says(p, since)
    _check_same_bytes_as_local(p, tiny_pipeline)
    with capsys.disabled():
        print(f"\ntiny pipeline: locally {tiny_pipeline.first_seconds:.0f} s; on SLURM {first_seconds:.0f} s until "
              f"the cancelled shard stopped dvc repro, then {second_seconds:.0f} s to resume and finish "
              f"({len(sacct(p.path, since))} SLURM jobs)")
