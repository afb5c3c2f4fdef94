"""Start a training stage: torchrun on this node, or one torchrun per node of a SLURM allocation.

    python -m selfalign.train.launch --processes 16 --nodes 2 --gpus 8 -- scripts/train.py ARGS...

One node: `torchrun --standalone` with all `--processes` on it. Several nodes (`train.nodes`): the job must be
a SLURM allocation of that many nodes (the profile's `nodes` resource for the training rules). Its batch script
runs on the first node only, so the launcher starts itself once per node with `srun`, and each copy runs
torchrun with `--processes / --nodes` processes and a c10d rendezvous at the allocation's first node, keyed by
the job id. `--gpus`: the GPUs this job takes on each node (selfalign/engine/devices.py), before torchrun
starts its processes.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys

from selfalign.core import stage
from selfalign.core.files import InputError
from selfalign.engine import devices

# Set in the environment of the per-node copies that srun starts: they run torchrun instead of srun.
ON_NODE = "SELFALIGN_TRAIN_ON_NODE"
RDZV_PORT = 29400  # torchrun's default c10d port, shifted per job so that jobs sharing a node do not collide


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list ("gpu[03-05,09],cpu1" -> "gpu03"): `scontrol show hostnames` where
    it is installed, else its common forms read here."""
    if shutil.which("scontrol"):
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.split():
            return out.stdout.split()[0]
    m = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not m:
        raise InputError(f"SLURM_JOB_NODELIST={nodelist!r}: not a node list")
    prefix, ranges = m.groups()
    return prefix + (ranges.split(",")[0].split("-")[0] if ranges else "")


def torchrun_args(processes: int, nodes: int, env: dict) -> list[str]:
    """torchrun's arguments for this node: `processes` in all, over `nodes` nodes."""
    if processes % nodes:
        raise InputError(f"params.yaml: train.processes={processes} is not a multiple of train.nodes={nodes}")
    per_node = processes // nodes
    if nodes == 1:
        return ["--standalone", f"--nproc_per_node={per_node}"]
    job = env.get("SLURM_JOB_ID")
    allocated = env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES")
    if not job or not allocated:
        raise InputError(f"params.yaml: train.nodes={nodes} needs a SLURM allocation of {nodes} nodes (run with the "
                         "SLURM profile and `nodes` set for the training rules); this job is not in one")
    if int(allocated) != nodes:
        raise InputError(f"params.yaml: train.nodes={nodes}, but this SLURM job has {allocated} node(s): set the "
                         f"training rules' `nodes` resource in the profile to {nodes}")
    port = int(env.get("MASTER_PORT") or RDZV_PORT + int(job) % 1000)
    return [f"--nnodes={nodes}", f"--nproc_per_node={per_node}", "--rdzv_backend=c10d",
            f"--rdzv_endpoint={first_host(env['SLURM_JOB_NODELIST'])}:{port}", f"--rdzv_id=selfalign-{job}"]


def command(processes: int, nodes: int, gpus: int, script: list[str], env: dict) -> list[str]:
    """What this launcher runs: srun of itself on every node (several nodes, on the first), else torchrun."""
    if nodes > 1 and not env.get(ON_NODE):
        args = [sys.executable, "-m", "selfalign.train.launch", "--processes", str(processes), "--nodes", str(nodes),
                "--gpus", str(gpus)]
        return ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
                *args, "--", *script]
    return [sys.executable, "-m", "torch.distributed.run", *torchrun_args(processes, nodes, env), *script]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, required=True)
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--gpus", type=int, default=0, help="GPUs to take on each node (train.gpus)")
    ap.add_argument("script", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    script = a.script[1:] if a.script[:1] == ["--"] else a.script
    cmd = command(a.processes, a.nodes, a.gpus, script, dict(os.environ))
    if cmd[0] != "srun":
        devices.claim(a.gpus, setting="train.gpus")
    env = dict(os.environ, **({ON_NODE: "1"} if a.nodes > 1 else {}))
    os.execvpe(cmd[0], cmd, env)  # torchrun (or srun) in this process: a signal to the job reaches it


if __name__ == "__main__":
    stage.die_with_parent()
    stage.run(main)
