"""GPUs of a job: each job that asks for N GPUs computes on N of its own.

Snakemake's `gpu` resource counts GPUs; it does not say which. Under `--cores all` on an 8-GPU node, eight
shard jobs with `gpu=1` run at once, and without more every engine would start on GPU 0. So a job claims its
GPUs before anything touches CUDA: among the GPUs it can see (CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`), it
takes the first N that no other job holds, by an exclusive lock on one file per GPU, and narrows
CUDA_VISIBLE_DEVICES to them. A job waits while all are taken. The locks are the process's own: they are
released when it exits, however it exits, so a killed job never leaves a GPU marked busy.

Under a scheduler that hands each job its own GPUs (SLURM's `--gpus`), a job sees exactly the GPUs it asked
for: it takes them all, and nothing is locked.
"""
from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from selfalign.core.files import InputError

log = logging.getLogger(__name__)

VISIBLE = "CUDA_VISIBLE_DEVICES"
# One lock file per GPU, shared by every job of every run on this host (two runs on one GPU fail for memory).
LOCKS = "SELFALIGN_GPU_LOCKS"
_held: list = []  # the open lock files: a lock lives as long as its file stays open


def visible_gpus(env: dict | None = None) -> list[str]:
    """The GPU ids this process may use: CUDA_VISIBLE_DEVICES's entries when it is set (indices or UUIDs),
    else one index per GPU `nvidia-smi -L` lists (none where there is no nvidia-smi)."""
    env = os.environ if env is None else env
    if VISIBLE in env:
        ids = [x.strip() for x in env[VISIBLE].split(",") if x.strip()]
        # CUDA stops at the first invalid entry: "-1" (a common way to hide every GPU) hides the rest.
        return ids[: next((i for i, x in enumerate(ids) if x.startswith("-")), len(ids))]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, _ in enumerate(re.findall(r"^GPU \d+", listed, flags=re.M))]


def lock_dir() -> Path:
    return Path(os.environ.get(LOCKS) or Path(tempfile.gettempdir()) / f"selfalign-gpus-{os.getuid()}")


def _try_lock(folder: Path, gpu: str):
    f = open(folder / re.sub(r"[^A-Za-z0-9_.-]", "_", gpu), "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def claim(n: int, *, setting: str, poll_s: float = 2.0) -> list[str]:
    """Take `n` GPUs for this process and narrow CUDA_VISIBLE_DEVICES to them; returns their ids. Call it
    before anything initialises CUDA (torch reads the variable then). `setting` names the param that asked
    for `n` GPUs, for the error when fewer (but some) are visible. n = 0, or no GPU at all, changes nothing."""
    if n <= 0:
        return []
    gpus = visible_gpus()
    if not gpus:  # a machine without GPUs: the job computes on its CPUs, as it would with the setting at 0
        log.warning("params.yaml: %s=%d, but this job sees no GPU: computing on the CPU", setting, n)
        return []
    if len(gpus) < n:
        raise InputError(f"params.yaml: {setting}={n}, but this job sees {len(gpus)} GPU(s)"
                         f" ({VISIBLE}={os.environ.get(VISIBLE, 'unset')}); set it to 0 on a machine without GPUs")
    if len(gpus) > n:
        folder = lock_dir()
        folder.mkdir(parents=True, exist_ok=True)
        waited = False
        while True:
            taken = []
            for gpu in gpus:
                f = _try_lock(folder, gpu)
                if f is not None:
                    taken.append((gpu, f))
                    if len(taken) == n:
                        break
            if len(taken) == n:
                break
            for _, f in taken:  # not enough free: give back what was taken, so two waiting jobs cannot deadlock
                f.close()
            if not waited:
                log.info("waiting for %d free GPU(s) of %s (the others are held by running jobs)", n, ",".join(gpus))
                waited = True
            time.sleep(poll_s)
        _held.extend(f for _, f in taken)
        gpus = [g for g, _ in taken]
    os.environ[VISIBLE] = ",".join(gpus)
    log.info("computing on GPU(s) %s", os.environ[VISIBLE])
    return gpus
