"""Fine-tuning through DeepSpeed on CPU: 2 processes on gloo, ZeRO-2, a tiny Llama; the real launch path."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from selfalign.core.files import write_jsonl
from selfalign.data.dialogue import prompt_text
from selfalign.train.finetune import IGNORE, encode

from conftest import ROOT

# Short, regular answers: a tiny random model learns them within a few steps.
PAIRS = [(f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}.") for a, b in
         [(1, 2), (3, 4), (5, 6), (7, 8), (2, 2), (4, 4), (6, 1), (9, 0)]]


def _params(**train):
    settings = {"method": "full", "epochs": 1, "max_steps": 8, "learning_rate": 3e-3, "lr_scheduler": "constant",
                "warmup_ratio": 0.0, "mixed_precision": "fp32", "batch_size": 2, "grad_accum": 1, "max_length": 64,
                "zero_stage": 2, "gradient_checkpointing": False, "offload": "none", "processes": 2, "save_steps": 4,
                "lora": {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": "all-linear"}}
    return {"seed": 7, "align": {"assistant_name": "Sage"}, "train": settings | train}


def launch(tmp_path, base, params, *, out="engraved", extra=(), check=True, background=False, env=None, timeout=600,
           nodes=1):
    data = tmp_path / "aligned.jsonl"
    write_jsonl(data, [{"id": f"a-{i:016x}", "query": q, "answer": a} for i, (q, a) in enumerate(PAIRS)])
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", **(env or {}))
    cmd = [sys.executable, "-m", "selfalign.train.launch", "--processes", str(params["train"]["processes"]),
           "--nodes", str(nodes), "--", str(ROOT / "scripts" / "train.py"), "--base", str(base), "--data", str(data),
           "--ds-configs", str(ROOT / "configs/deepspeed"),
           "--params", json.dumps(params), "--out", str(tmp_path / out), "--metrics", str(tmp_path / "m.json"),
           "--plot", str(tmp_path / "loss.csv"), "--work-dir", str(tmp_path / "work"), *extra]
    if background:  # in its own process group, so that a test can kill torchrun and its workers at once
        return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"training failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}")
    return p


def _loss(model_dir, tok_dir, query, answer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    enc = encode([(query, answer)], tok, assistant="Sage", max_length=64)
    with torch.no_grad():
        return float(model(input_ids=torch.tensor(enc.input_ids), labels=torch.tensor(enc.labels)).loss)


def test_encode_masks_the_prompt_and_counts_truncation(tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    enc = encode([("Hi there?", "Hello! How can I help?"), ("Long?", "word " * 100)], tok, assistant="Sage", max_length=32)
    prompt_len = len(tok(prompt_text("Hi there?", "Sage"))["input_ids"])
    assert enc.labels[0][:prompt_len] == [IGNORE] * prompt_len
    assert enc.labels[0][prompt_len:] == enc.input_ids[0][prompt_len:] and enc.labels[0][-1] == tok.eos_token_id
    assert enc.truncated == 1 and len(enc.input_ids[1]) == 32


def llama_style_tokenizer():
    """A SentencePiece tokenizer in Llama 2's style (a "▁" dummy prefix on every text), from a tiny vocabulary."""
    from tokenizers import Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    words = ["User", ":", "Sage", "Hi", "there", "?", "Hello", "!", "How", "can", "I", "help", "\n"]
    vocab = [("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0), ("▁", -2.0)]
    vocab += [("▁" + w, -1.0) for w in words] + [(w, -1.5) for w in words]
    tk = Tokenizer(models.Unigram(vocab, unk_id=0))
    tk.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def test_training_learns_the_tokens_eval_scores_with_a_dummy_prefix_tokenizer():
    from selfalign.data.dialogue import encode_pair

    tok = llama_style_tokenizer()
    query, answer = "Hi there?", "Hello! How can I help?"
    assert tok.convert_ids_to_tokens(tok(" " + answer)["input_ids"])[:2] == ["▁", "▁Hello"]  # the trap
    enc = encode([(query, answer)], tok, assistant="Sage", max_length=64)
    learned = [t for t, label in zip(enc.input_ids[0], enc.labels[0]) if label != IGNORE]
    assert tok.convert_ids_to_tokens(learned) == ["▁Hello", "!", "▁How", "▁can", "▁I", "▁help", "?", "</s>"]
    # ... the very tokens that evaluation scores as the answer after the same prompt.
    ctx, cont = encode_pair(tok, prompt_text(query, "Sage"), " " + answer)
    assert enc.input_ids[0] == ctx + cont + [tok.eos_token_id]


@pytest.fixture(scope="module")
def zero2_run(tiny_materialized, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("zero2")
    launch(tmp, tiny_materialized, _params())
    return tmp


@pytest.mark.slow
def test_two_process_zero2_training_lowers_loss_and_reloads_identically(zero2_run, tiny_materialized, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfalign.train.finetune import answer_logits

    m = json.loads((zero2_run / "m.json").read_text())
    assert m["steps"] == 8 and m["processes"] == 2
    assert m["last_loss"] < m["first_loss"]
    out = zero2_run / "engraved"
    info = json.loads((out / "training.json").read_text())
    assert info["settings"]["zero_stage"] == 2 and info["data_sha256"]
    assert (out / "model.safetensors").exists() and not list(out.glob("*.bin"))
    model = AutoModelForCausalLM.from_pretrained(out)  # plain transformers, no selfalign needed
    tok = AutoTokenizer.from_pretrained(out)
    reloaded = answer_logits(model, tok, "Sage")
    assert reloaded == pytest.approx(info["probe_logits"], abs=1e-4)
    # ... and answers a query.
    ids = tok(prompt_text(PAIRS[1][0], "Sage"), return_tensors="pt")["input_ids"]
    answer = model.generate(ids, max_new_tokens=8, do_sample=False)[0, ids.shape[1]:]
    assert len(answer) > 0 and tok.decode(answer, skip_special_tokens=True).strip()
    # The trained model fits a training answer better than the base model does.
    q, a = PAIRS[0]
    assert _loss(out, out, q, a) < _loss(tiny_model_dir, tiny_model_dir, q, a)
    lines = (zero2_run / "loss.csv").read_text().splitlines()
    assert lines[0] == "step,loss" and len(lines) == 9
    # Timings are not results: none in the metrics, the loss history or the model folder.
    assert not {"runtime_s", "answer_tokens_per_s"} & set(m) and "seconds" not in json.dumps(info)


def _weights(folder) -> bytes:
    return (folder / "model.safetensors").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "lora"])
def test_two_process_zero2_training_is_reproducible_byte_for_byte(method, zero2_run, tiny_materialized, tmp_path):
    # Seeded before LoRA's adapters are drawn; gloo sums two numbers per element, which is order-free.
    if method == "full":
        first = zero2_run / "engraved"  # the module's run, with the same settings
    else:
        (tmp_path / "a").mkdir()
        launch(tmp_path / "a", tiny_materialized, _params(method=method))
        first = tmp_path / "a" / "engraved"
    (tmp_path / "b").mkdir()
    launch(tmp_path / "b", tiny_materialized, _params(method=method))
    assert _weights(tmp_path / "b" / "engraved") == _weights(first)
    assert (tmp_path / "b" / "m.json").read_bytes() == (first.parent / "m.json").read_bytes()
    assert (tmp_path / "b" / "loss.csv").read_bytes() == (first.parent / "loss.csv").read_bytes()


@pytest.mark.slow
def test_bf16_trains_under_deepspeed_bf16_and_exports_in_the_base_dtype(tiny_materialized, tmp_path):
    from safetensors import safe_open

    launch(tmp_path, tiny_materialized, _params(mixed_precision="bf16", processes=1))
    info = json.loads((tmp_path / "engraved" / "training.json").read_text())
    assert info["bf16"] is True
    with safe_open(str(tmp_path / "engraved" / "model.safetensors"), "pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.float32"}
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["last_loss"] < m["first_loss"]


@pytest.mark.slow
def test_a_build_lock_left_by_a_killed_process_does_not_stop_training(tiny_materialized, tmp_path):
    # A process killed while torch builds an op leaves `lock` in the build folder, and every later
    # build of that op waits for it forever; training must not depend on such a build.
    stale = tmp_path / "extensions" / "deepspeed_shm_comm" / "lock"
    stale.parent.mkdir(parents=True)
    stale.touch()
    launch(tmp_path, tiny_materialized, _params(processes=1, max_steps=2),
           env={"TORCH_EXTENSIONS_DIR": str(tmp_path / "extensions")}, timeout=300)
    assert (tmp_path / "engraved" / "model.safetensors").exists()
    assert stale.exists()  # waited on by nothing, not removed behind anyone's back


@pytest.mark.slow
def test_zero3_loads_each_process_share_of_the_weights_only(tiny_materialized, tmp_path):
    # Each process holds its partition right after from_pretrained (DeepSpeed's zero.Init), never the whole model:
    # what lets a 70B model load on GPUs that cannot hold it once per process.
    p = launch(tmp_path, tiny_materialized, _params(zero_stage=3, max_steps=2, gradient_checkpointing=True))
    shares = {int(r): (int(h), int(t)) for r, h, t in
              re.findall(r"process (\d) of 2 holds (\d+) of the model's (\d+) parameter values", p.stderr)}
    assert set(shares) == {0, 1}, p.stderr[-3000:]
    total = shares[0][1]
    for held, whole in shares.values():
        assert whole == total and total / 2 <= held < total / 2 * 1.01  # half, up to DeepSpeed's padding
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["steps"] == 2 and (tmp_path / "engraved" / "model.safetensors").exists()


@pytest.mark.slow
def test_zero3_with_everything_offloaded_to_the_host_trains_and_exports(tiny_materialized, tmp_path):
    # train.offload: all: optimizer state and parameters in host memory (DeepSpeed's CPU Adam, built on first use).
    launch(tmp_path, tiny_materialized, _params(zero_stage=3, offload="all", processes=1, max_steps=2))
    info = json.loads((tmp_path / "engraved" / "training.json").read_text())
    zero = info["deepspeed"]["zero_optimization"]
    assert zero["offload_optimizer"]["device"] == zero["offload_param"]["device"] == "cpu"
    assert info["metrics"]["steps"] == 2 and (tmp_path / "engraved" / "model.safetensors").exists()


def test_offload_settings_become_deepspeed_sections_and_parameters_need_zero3():
    from selfalign.core.files import InputError
    from selfalign.train.finetune import deepspeed_config

    folder = ROOT / "configs/deepspeed"
    assert "offload_optimizer" not in deepspeed_config(folder, 2)["zero_optimization"]
    assert set(deepspeed_config(folder, 2, "optimizer")["zero_optimization"]) >= {"offload_optimizer"}
    assert "offload_param" not in deepspeed_config(folder, 2, "optimizer")["zero_optimization"]
    assert set(deepspeed_config(folder, 3, "all")["zero_optimization"]) >= {"offload_optimizer", "offload_param"}
    with pytest.raises(InputError, match="train.offload=all offloads the parameters, which only ZeRO-3 partitions"):
        deepspeed_config(folder, 2, "all")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_train_to_the_weights_of_one_node_with_the_same_world_size(zero2_run, tiny_materialized, tmp_path):
    # Two launchers as two nodes of a SLURM allocation would run them (one process each, a c10d rendezvous at the
    # allocation's first node, here localhost), sharing the job's folder as nodes share a file system.
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "localhost",
             "MASTER_PORT": str(_free_port()), "SELFALIGN_TRAIN_ON_NODE": "1"}
    nodes = [launch(tmp_path, tiny_materialized, _params(), nodes=2, background=True, env=slurm) for _ in range(2)]
    try:
        assert [n.wait(timeout=600) for n in nodes] == [0, 0]
    finally:
        for n in nodes:
            if n.poll() is None:
                os.killpg(n.pid, signal.SIGKILL)
    assert _weights(tmp_path / "engraved") == _weights(zero2_run / "engraved")
    assert (tmp_path / "m.json").read_bytes() == (zero2_run / "m.json").read_bytes()


def test_the_launcher_runs_torchrun_here_and_itself_once_per_node_of_an_allocation():
    from selfalign.core.files import InputError
    from selfalign.train import launch as L

    assert L.command(4, 1, 4, ["train.py"], {})[3:] == ["--standalone", "--nproc_per_node=4", "train.py"]
    alloc = {"SLURM_JOB_ID": "1007", "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "gpu[07-08]"}
    first = L.command(16, 2, 8, ["train.py"], alloc)  # the batch script, on the first node
    assert first[:5] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert first[-2:] == ["--", "train.py"] and "--gpus" in first
    on_node = L.command(16, 2, 8, ["train.py"], alloc | {L.ON_NODE: "1"})
    assert on_node[3:] == ["--nnodes=2", "--nproc_per_node=8", "--rdzv_backend=c10d",
                           f"--rdzv_endpoint={L.first_host('gpu[07-08]')}:{L.RDZV_PORT + 7}", "--rdzv_id=selfalign-1007",
                           "train.py"]
    assert L.first_host("node[01-04,07],cpu1") == "node01" and L.first_host("a,b") == "a"
    with pytest.raises(InputError, match="train.processes=6 is not a multiple of train.nodes=4"):
        L.torchrun_args(6, 4, alloc)
    with pytest.raises(InputError, match="needs a SLURM allocation of 2 nodes"):
        L.torchrun_args(4, 2, {})
    with pytest.raises(InputError, match="this SLURM job has 2 node"):
        L.torchrun_args(6, 3, alloc)


def _parses(path) -> bool:
    try:
        json.loads(path.read_text())
        return True
    except (OSError, ValueError):
        return False


@pytest.mark.slow
def test_training_killed_with_sigkill_resumes_to_the_uninterrupted_result(tiny_materialized, tmp_path):
    params = _params(method="lora", processes=1, max_steps=40, save_steps=2)
    whole = tmp_path / "whole"
    whole.mkdir()
    launch(whole, tiny_materialized, params)
    tmp_path = tmp_path / "killed"
    tmp_path.mkdir()
    proc = launch(tmp_path, tiny_materialized, params, background=True)
    work = tmp_path / "work" / "engraved"
    try:
        deadline = time.monotonic() + 300
        while not list(work.glob("*/checkpoint-*/trainer_state.json")):
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its worker, as an OOM killer or a preempted node would
        proc.wait()
    assert not (tmp_path / "engraved").exists() and not (tmp_path / "m.json").exists()  # nothing half-finished
    run = next(work.iterdir())
    complete = max(int(d.name.split("-")[1]) for d in run.glob("checkpoint-*") if _parses(d / "trainer_state.json"))
    assert complete < 38  # killed mid-run: the relaunch has steps left to train
    # A kill in the middle of the next save leaves a folder without its trainer state: never resumed from.
    (run / "checkpoint-38").mkdir()
    (run / "checkpoint-38" / "adapter_model.safetensors").write_bytes(b"half")
    resumed = launch(tmp_path, tiny_materialized, params)
    assert f"resuming from {run / f'checkpoint-{complete}'}" in resumed.stderr
    assert not work.exists() or not any(work.iterdir())
    # The same weights, metrics and loss history (the steps before the kill included) as a run never killed.
    assert _weights(tmp_path / "engraved") == _weights(whole / "engraved")
    assert (tmp_path / "m.json").read_bytes() == (whole / "m.json").read_bytes()
    assert (tmp_path / "loss.csv").read_bytes() == (whole / "loss.csv").read_bytes()
    assert len((tmp_path / "loss.csv").read_text().splitlines()) == 41


def test_wrong_process_count_is_a_clear_error(tiny_materialized, tmp_path):
    # torchrun starts train.processes processes; a script started with another world size says so.
    params = _params(processes=3)
    p = subprocess.run([sys.executable, str(ROOT / "scripts/train.py"), "--base", str(tiny_materialized), "--data", "x",
                        "--ds-configs", "y", "--params", json.dumps(params), "--out", "o", "--metrics", "m", "--plot", "p"],
                       cwd=tmp_path, env=dict(os.environ, WORLD_SIZE="1"), capture_output=True, text=True)
    assert p.returncode == 1 and "train.processes is 3 but 1 processes were started" in p.stderr
