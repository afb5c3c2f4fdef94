"""dvc.yaml is generated from the Snakemake rules; these tests prove the two describe one graph."""
import ast
import copy

import networkx as nx
import pytest
import yaml

from selfalign.core.config import load_params
from selfalign.workflow import dvcgen

from conftest import ROOT


@pytest.fixture(scope="module")
def rules():
    return dvcgen.load_rules(ROOT)


def test_committed_dvc_yaml_is_generated_from_the_rules():
    assert dvcgen.main(["--check"]) == 0, "run `python -m selfalign.workflow.dvcgen` (make dvc.yaml) and commit dvc.yaml"


def test_dvc_graph_equals_snakemake_graph(rules):
    from dvc.repo import Repo

    stage_of = {r.name: dvcgen.Path(r.snakefile).stem for r in rules if "rules" in r.snakefile}
    snake = nx.DiGraph()
    snake.add_nodes_from(set(stage_of.values()))
    for r in rules:
        if r.name not in stage_of:
            continue
        for f in r.input:
            for other in rules:
                if other.name in stage_of and stage_of[other.name] != stage_of[r.name] and other.is_producer(str(f)):
                    snake.add_edge(stage_of[other.name], stage_of[r.name])
    with Repo(str(ROOT)) as repo:
        dvc = nx.DiGraph()
        for stage in repo.index.stages:
            dvc.add_node(stage.name)
        for a, b in repo.index.graph.edges:  # DVC's edges point from a stage to what it depends on
            dvc.add_edge(b.name, a.name)
    assert set(dvc.nodes) == set(snake.nodes)
    assert set(dvc.edges) == set(snake.edges)
    assert nx.is_directed_acyclic_graph(dvc)


def test_stage_params_are_what_the_rules_pass(rules):
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert stages["topics"]["params"] == ["seed", "model.inference_dtype", "generation.backend", "generation.batch_size",
                                          "generation.max_num_seqs", "generation.prefix_cache",
                                          "generation.tensor_parallel_size", "generation.compile", "generation.shards",
                                          "topics.samples_per_type",
                                          "topics.min_per_type", "topics.max_rounds", "topics.max_words",
                                          "topics.rouge_threshold", "topics.decoding", "topics.max_per_type"]
    # The model stage stores the weights: how later stages compute with them does not rerun it.
    assert stages["model"]["params"] == ["model.name", "model.dtype", "model.trust_remote_code"]
    assert not any(p.startswith("topics") for p in stages["queries"]["params"])
    assert "generation.gpus_per_shard" not in str(stages)  # a resource, not an input of the results


def test_a_key_missing_from_params_yaml_is_caught(rules):
    params = load_params(ROOT / "params.yaml")
    broken = copy.deepcopy(params)
    del broken["queries"]["decoding"]
    with pytest.raises(KeyError, match="queries.decoding"):
        dvcgen.build_stages(rules, broken, ROOT)


def test_module_deps_follow_imports_transitively():
    deps = dvcgen.module_deps(ROOT / "scripts" / "collect_queries.py", ROOT)
    # collect_queries imports selfalign.stages.queries, which imports dedup: an edit there must rerun the stage.
    assert "selfalign/text/dedup.py" in deps and "selfalign/stages/queries.py" in deps
    assert "selfalign/workflow/dvcgen.py" not in deps


def _package(root, files: dict[str, str]):
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


@pytest.mark.parametrize("form", [
    "from pkg.sub import helper",                  # absolute, a module
    "from pkg.sub.helper import f",                # absolute, a name in a module
    "import pkg.sub.helper",                       # plain import
    "from .sub import helper",                     # relative, one level
    "from .sub.helper import f",
])
def test_a_helper_moved_into_a_subpackage_stays_a_dependency(tmp_path, form):
    # pkg/stage.py imports pkg/sub/helper.py in each import form; helper imports pkg/sub/deep/leaf.py two
    # levels up and back down. Every file on the way, and the __init__.py Python runs, must be a dependency.
    _package(tmp_path, {
        "pkg/__init__.py": "", "pkg/sub/__init__.py": "", "pkg/sub/deep/__init__.py": "",
        "pkg/stage.py": form + "\n",
        "pkg/sub/helper.py": "from ..sub.deep import leaf\n\ndef f():\n    return leaf.g()\n",
        "pkg/sub/deep/leaf.py": "def g():\n    return 1\n",
        "pkg/unused.py": "",
        "scripts/run.py": "from pkg import stage\n",
    })
    deps = dvcgen.module_deps(tmp_path / "scripts" / "run.py", tmp_path, package="pkg")
    assert deps == ["pkg/__init__.py", "pkg/stage.py", "pkg/sub/__init__.py", "pkg/sub/deep/__init__.py",
                    "pkg/sub/deep/leaf.py", "pkg/sub/helper.py"]


def test_align_depends_on_no_eval_module():
    # align scores relevance with the engine's scorer; an edit to eval's code must not rerun align.
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["align"]["deps"]
    assert "selfalign/engine/scoring.py" in deps
    assert not [d for d in deps if d.startswith("selfalign/eval/")]


def test_every_script_docstring_starts_with_its_command():
    for script in sorted((ROOT / "scripts").glob("*.py")):
        doc = ast.get_docstring(ast.parse(script.read_text()))
        assert doc, script
        commands = [line.strip() for line in doc.splitlines()]
        assert any(c.startswith(("python ", "torchrun ")) and f"scripts/{script.name}" in c for c in commands), \
            f"{script.name}: docstring should show the command that runs it"


def test_principles_are_params_of_align_and_nothing_upstream():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    align = stages["align"]
    assert {"principles/principles.yaml": ["principles"]} in align["params"]
    assert {"principles/exemplars.yaml": ["exemplars"]} in align["params"]
    assert not any(str(d).startswith("principles/") for d in align["deps"])
    for upstream in ("model", "topics", "queries"):
        assert "principles" not in str(stages[upstream])
    # Everything downstream of align depends on its output, directly or through another stage.
    assert "data/aligned/aligned.jsonl" in stages["engrave"]["deps"]
    assert "models/engraved" in stages["verbose"]["deps"] and "models/final" in stages["eval"]["deps"]


def test_training_rules_declare_gpu_resources(rules):
    by_name = {r.name: r for r in rules}
    for name in ("engrave", "verbose_clone", "generate_aligned", "generate_verbose"):
        assert "gpu" in by_name[name].resources, name


def test_the_check_stage_runs_first_and_reads_hand_written_inputs_as_files():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    check = stages.pop("check")
    assert check["outs"] == ["data/checked.txt"] and "params" not in check
    # As plain files: DVC cannot hash a principles file whose keys mix "6" and 6, and this stage reports it.
    assert {"params.yaml", "principles/principles.yaml", "principles/exemplars.yaml"} <= set(check["deps"])
    assert all("data/checked.txt" in stage["deps"] for stage in stages.values())


def test_every_rule_records_its_time_and_memory():
    # Snakemake's `benchmark:` record per job is where every time figure comes from (selfalign timings).
    import re

    for smk in sorted((ROOT / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=rule )", smk.read_text())[1:]:
            name = block.split(":")[0].removeprefix("rule ")
            assert "\n    benchmark:\n" in block, f"{smk.name}: rule {name} has no benchmark: directive"
