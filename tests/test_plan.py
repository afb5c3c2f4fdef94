"""`selfalign plan` on the committed run: rates fitted from its timings, work scaled from params."""
import json
import shutil

import jsonschema
import pytest
import yaml

from selfalign.data.paths import STAGES
from selfalign.plan import estimate, plan, work

from pipeline import ROOT, copy_pipeline

SCHEMA = json.loads((ROOT / "schemas/plan.schema.json").read_text())
EVERY = [s for s in STAGES if s != "check"]


def test_fitted_start_and_rate_are_those_the_jobs_were_made_with():
    w = {"a": work.StageWork("a", 1, 1, [work.Part("generate", 1, 1000), work.Part("collect", 1)]),
         "b": work.StageWork("b", 1, 1, [work.Part("generate", 2, 8000)])}
    jobs = [{"stage": "a", "job": "000", "seconds": 40 + 0.01 * 1000}, {"stage": "a", "job": "collect", "seconds": 3.0},
            {"stage": "b", "job": "000", "seconds": 40 + 0.01 * 4000}, {"stage": "b", "job": "001", "seconds": 40 + 0.01 * 4000}]
    r = estimate.rates(jobs, w)
    assert r["start"]["generate"] == pytest.approx(40, abs=0.1)
    assert r["rate"]["a"]["generate"] == pytest.approx(0.01, rel=0.01)
    assert r["rate"]["b"]["generate"] == pytest.approx(0.01, rel=0.01)
    assert r["fixed"]["a"]["collect"] == 3.0


def test_expected_counts_follow_the_last_runs_shares(committed):
    params = yaml.safe_load((committed / "params.yaml").read_text())
    last = work.counts_from_metrics(committed / "metrics")
    got = work.expected(params, last, plan.locked_params(committed, params), types=20)
    # The committed params give back the committed run's counts.
    assert got["topics"]["generations"] == last["topics"]["generations"]
    assert got["queries"]["generations"] == last["queries"]["generations"]
    assert got["align"]["generations"] == last["align"]["generations"]
    assert got["align"]["kept"] == last["align"]["kept"]
    n = params["align"]["max_queries"] = params["align"]["max_queries"] // 4
    half = work.expected(params, last, plan.locked_params(committed, params), types=20)
    # The share the plan scales by: kept over generations (metrics round kept_share to 4 places).
    share = last["align"]["kept"] / last["align"]["generations"]
    assert half["align"]["generations"] == n and half["align"]["kept"] == round(n * share)
    assert half["verbose"]["generations"] == half["align"]["kept"]


def test_plan_of_the_committed_params_gives_back_the_committed_times_and_validates(committed):
    p = plan.build(committed, stages=EVERY, rates_file=str(committed / plan.SNAPSHOT))
    jsonschema.validate(p, SCHEMA)
    measured = {s["stage"]: s["seconds"] for s in json.loads((committed / plan.SNAPSHOT).read_text())["stages"]}
    assert [s["stage"] for s in p["stages"]] == EVERY
    for s in p["stages"]:
        assert s["seconds"] == pytest.approx(measured[s["stage"]], rel=0.02), s["stage"]
    assert p["rates"]["source"] == plan.SNAPSHOT and 0 < p["rates"]["engine_start_s"] < 120
    align = next(s for s in p["stages"] if s["stage"] == "align")
    # Principles and exemplars: nearly all of an align prompt is the prefix every query shares.
    assert align["prompt_tokens"]["shared"] > 0.9 * align["prompt_tokens"]["mean"] > 500
    assert "error" not in plan.text(p)


@pytest.fixture
def copy(tmp_path, committed):
    copy_pipeline(tmp_path, "gemma3-270m")
    # The committed run's params, seeds, metrics and timings, not the tiny pipeline's.
    for name in ("params.yaml", "data/seeds/red_team_types.jsonl", "metrics", "dvc.lock", plan.SNAPSHOT):
        src = committed / name
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / name)
    return tmp_path


def test_more_queries_and_parallel_jobs_change_the_time_as_the_rates_say(copy):
    base = plan.build(copy, stages=["align", "eval"])
    params = yaml.safe_load((copy / "params.yaml").read_text())
    params["align"]["max_queries"] //= 2
    params["generation"]["shards"] = 2
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    half = plan.build(copy, stages=["align", "eval"], parallel=2)
    jsonschema.validate(half, SCHEMA)
    gen = lambda p, s: next(x for x in next(r for r in p["stages"] if r["stage"] == s)["parts"] if x["part"] == "generate")
    full, part = gen(base, "align"), gen(half, "align")
    assert part["units"] == full["units"] / 2 and part["jobs"] == 2
    # Two shards at once: each starts an engine and does a quarter of the budget.
    assert part["seconds"] == pytest.approx(full["start_s"] + (full["seconds"] - full["start_s"]) / 4, rel=0.01)
    # Eval's scoring does not depend on shards; its XSTest jobs split in two per checkpoint.
    assert gen(half, "eval")["jobs"] == 2 * gen(base, "eval")["jobs"]


def test_a_snapshot_without_jobs_is_a_clear_error(copy):
    from selfalign.core.files import InputError

    (copy / "rates.json").write_text("{}")
    with pytest.raises(InputError, match="rates.json: not a timings snapshot"):
        plan.build(copy, stages=["align"], rates_file=str(copy / "rates.json"))


ZEN3 = "flags\t\t: fpu vme sse2 avx avx2 fma bmi2\n"  # AVX2 only
ZEN4 = "flags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"


def test_cpu_class_is_the_widest_of_its_flags():
    assert estimate.cpu_class(ZEN3).endswith(" avx2")
    assert estimate.cpu_class(ZEN4).endswith(" avx512_bf16")
    assert estimate.cpu_class(ZEN4.replace(" avx512_bf16", "")).endswith(" avx512")
    assert estimate.cpu_class("Features\t: fp asimd bf16 sve\n").endswith(" bf16")
    assert estimate.cpu_class("").endswith(" unknown")


def test_rates_from_another_cpu_class_are_said_to_be(copy):
    here = estimate.cpu_class()
    snap = json.loads((copy / plan.SNAPSHOT).read_text())
    for ran_on, said in [("x86_64 some_other_class", True), (here, False)]:
        snap["setup"]["cpu"] = ran_on
        (copy / plan.SNAPSHOT).write_text(json.dumps(snap))
        notes = [n for n in plan.build(copy, stages=["align"])["notes"] if "CPU" in n]
        assert notes == ([f"rates measured on an x86_64 some_other_class CPU, this one is {here}: expect other times "
                          "(a class apart, the same params can take several times as long, and give other bytes)"]
                         if said else [])
