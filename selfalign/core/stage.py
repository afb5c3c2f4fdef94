"""What every stage script shares: logging, the offline environment, and clean failure messages."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Callable

from selfalign.core.files import DatasetValidationError, InputError, OutputError

# The DVC stage (rules/check.smk) that checks every hand-written input before any other stage runs.
CHECK_STAGE = "check"


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


def dvc_note() -> str | None:
    """Under `dvc repro`, what a failed stage must add: DVC removed the stage's outputs before running
    its command, and how to get them back. None outside DVC and in the check stage (whose only output
    is its stamp)."""
    stage = os.environ.get("DVC_STAGE")
    if not stage or stage == CHECK_STAGE:
        return None
    uncached = []
    with contextlib.suppress(Exception):  # a note must never hide the error it goes with
        import yaml

        spec = yaml.safe_load((Path(os.environ.get("DVC_ROOT", ".")) / "dvc.yaml").read_text())["stages"][stage]
        for kind in ("outs", "metrics", "plots"):
            for entry in spec.get(kind) or []:
                if isinstance(entry, dict):
                    (path, opts), = entry.items()
                    if isinstance(opts, dict) and opts.get("cache") is False:
                        uncached.append(path)
    note = (f"note: dvc repro removed the outputs of stage '{stage}' before running it; "
            f"`dvc checkout {stage}` restores the ones dvc.lock records")
    if uncached:
        note += f", and `git checkout -- {' '.join(uncached)}` the metrics and plots (git tracks those)"
    return note


def fail(message: str) -> None:
    """Print `error: <message>` (and the DVC note, if any) on stderr and exit 1."""
    print(f"error: {message}", file=sys.stderr)
    note = dvc_note()
    if note:
        print(note, file=sys.stderr)
    sys.exit(1)


@contextlib.contextmanager
def exit_on_input_error():
    """For the Snakefile: bad params end the workflow with one error line, not Snakemake's traceback."""
    try:
        yield
    except InputError as e:
        fail(str(e))


def run(main: Callable[[], None]) -> None:
    """Run a stage's main(); bad input and failed checks end it with one clear message and exit 1."""
    setup()
    try:
        main()
    except (InputError, OutputError, DatasetValidationError) as e:
        fail(str(e))
    except OSError as e:
        if not e.filename:  # not about a file the user can fix: keep the traceback for whoever debugs it
            raise
        fail(f"{e.filename}: {e.strerror or e}")
