"""What every stage script shares: logging, the offline environment, and clean failure messages."""
from __future__ import annotations

import logging
import os
import sys
from typing import Callable

from .io import DatasetValidationError, InputError


def setup() -> None:
    # Nothing here may reach a model hub or send telemetry; stages must run on offline machines.
    for k, v in {"HF_HUB_OFFLINE": "1", "GX_ANALYTICS_ENABLED": "false", "TOKENIZERS_PARALLELISM": "false"}.items():
        os.environ.setdefault(k, v)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    for noisy in ("great_expectations", "httpx", "urllib3", "filelock", "DeepSpeed", "torch.distributed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def die_with_parent() -> None:
    """Have Linux SIGKILL this process when the process that started it dies.

    torchrun starts its workers in sessions of their own, so killing torchrun (or the `dvc repro`
    above it) would leave them training on, writing checkpoints into the folder that the next run
    resumes from.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() == 1:  # the parent was already gone before the call above
        sys.exit(1)


def run(main: Callable[[], None]) -> None:
    """Run a stage's main(); bad input and failed checks end it with one clear message and exit 1."""
    setup()
    try:
        main()
    except (InputError, DatasetValidationError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
