"""The README's result tables are the committed run's figures (selfalign/audit/readme.py)."""
import json
import shutil

from selfalign.audit import readme
from selfalign.audit.cli import main

from pipeline import ROOT


def test_readme_tables_are_those_of_the_committed_metrics_and_timings(committed):
    assert readme.update(committed / "README.md", committed, check=True), \
        "README.md's tables differ from metrics/, bench/pipeline_timings.json or bench/quality.json: run `selfalign readme`"


def test_a_changed_metric_makes_the_check_fail_and_the_rewrite_shows_it(tmp_path, capsys):
    shutil.copytree(ROOT / "metrics", tmp_path / "metrics")
    (tmp_path / "bench").mkdir()
    shutil.copy(ROOT / readme.TIMINGS, tmp_path / readme.TIMINGS)
    shutil.copy(ROOT / readme.FIGURES_FILE, tmp_path / readme.FIGURES_FILE)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    m = json.loads((tmp_path / "metrics/queries.json").read_text())
    m["kept"] = 98765
    (tmp_path / "metrics/queries.json").write_text(json.dumps(m))
    args = ["readme", "--root", str(tmp_path), "--readme", str(tmp_path / "README.md")]
    assert main([*args, "--check"]) == 1
    assert "run `selfalign readme`" in capsys.readouterr().err
    assert main(args) == 0
    assert "**98765 queries**" in (tmp_path / "README.md").read_text()
    assert main([*args, "--check"]) == 0
