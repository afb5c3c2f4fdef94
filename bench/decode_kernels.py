"""CUDA kernels and GPU time of one decode step, fp32 against bf16: is a step bound by the GPU's math or
by the host launching kernels? (torch profiler; needs a CUDA device.)

    HF_HUB_OFFLINE=1 python bench/decode_kernels.py models/base [--batch 16] [--context 1500]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selfalign.engine.models import load_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--context", type=int, default=1500)
    a = ap.parse_args()
    import torch
    from torch.profiler import ProfilerActivity, profile

    if not torch.cuda.is_available():
        sys.exit("bench/decode_kernels.py needs a CUDA device")
    for dtype in ("float32", "bfloat16"):
        model, _, _ = load_model(a.model, dtype=dtype)
        ids = torch.randint(0, 1000, (a.batch, a.context), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
        with torch.inference_mode():
            out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
            step = dict(input_ids=out.logits[:, -1].argmax(-1, keepdim=True), past_key_values=out.past_key_values,
                        use_cache=True, logits_to_keep=1)
            for _ in range(3):  # warm-up (the cache grows by a token a step; irrelevant to the counts)
                model(**step)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                model(**step)
                torch.cuda.synchronize()
        events = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
        kernels = sum(e.count for e in events)
        gpu_ms = sum(e.self_device_time_total for e in events) / 1000
        print(f"{dtype}: {kernels} CUDA kernels, {gpu_ms:.1f} ms of GPU time in one decode step "
              f"(batch {a.batch}, {a.context} tokens cached)")
        del model, out, step
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
