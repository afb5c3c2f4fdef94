"""The offline page and plot templates of `dvc plots show`."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from selfalign.data import eval_sets
from selfalign.eval import multiple_choice
from selfalign.workflow import plot_templates

from conftest import ROOT


def test_offline_page_inlines_the_vega_libraries():
    page = (ROOT / ".dvc/plots/offline.html").read_text(encoding="utf-8")
    assert "{plot_divs}" in page and "{scripts}" not in page  # DVC's CDN script tags have nowhere to go
    assert not re.search(r"<script[^>]+src=", page)
    for lib in ("global.vega = {}", "global.vegaLite = {}", "global.vegaEmbed = factory"):
        assert lib in page
    assert "html_template = plots/offline.html" in (ROOT / ".dvc/config").read_text()


def _dvc_repo(tmp: Path) -> Path:
    env_bin = Path(sys.executable).parent
    subprocess.run(["git", "init", "-q"], cwd=tmp, check=True)
    subprocess.run([env_bin / "dvc", "init", "-q"], cwd=tmp, check=True)
    shutil.copy2(ROOT / ".dvc/config", tmp / ".dvc/config")
    shutil.copytree(ROOT / ".dvc/plots", tmp / ".dvc/plots")
    return env_bin / "dvc"


def test_dvc_plots_show_writes_a_page_that_needs_no_network(tmp_path):
    items = eval_sets.load_hhh(ROOT / "data/eval/hhh", per_category=3)
    graded = multiple_choice.grade(items, [(-float(i % 7) - 1, 3) for i in range(sum(len(it.choices) for it in items))])
    metrics = {"base": multiple_choice.summarize(graded, seed=0, n_boot=200)}
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots/eval.csv").write_text(multiple_choice.plot_csv(metrics, items, ["base"]))
    (tmp_path / "plots/citations.csv").write_text("principle,citations\n" + "".join(f"{i} (p{i}),{i}\n" for i in range(1, 17)))
    (tmp_path / "dvc.yaml").write_text(
        "plots:\n- plots/eval.csv:\n    template: bar_ci\n    x: value\n    y: task (checkpoint)\n"
        "- plots/citations.csv:\n    template: bar_ordered\n    x: citations\n    y: principle\n")
    dvc = _dvc_repo(tmp_path)
    subprocess.run([dvc, "plots", "show", "-o", "out"], cwd=tmp_path, check=True, capture_output=True)
    page = (tmp_path / "out/index.html").read_text()
    assert not re.search(r"<(?:script|link)[^>]+(?:src|href)=[\"']?https?:", page)
    assert page.count("vegaEmbed('#") == 2 and '"chance"' in page and '"sort": null' in page
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium here to render the page (the structure checks above passed)")
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                          "--dump-dom", (tmp_path / "out/index.html").as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert dom.count("<canvas") + dom.count("<svg") >= 2, "vega drew nothing: the page did not render"


def test_templates_are_what_selfalign_plots_writes():
    for rel, text in plot_templates.files().items():
        assert (ROOT / rel).read_text(encoding="utf-8") == text, f"{rel} is stale: run `python -m selfalign.workflow.dvcgen`"


def test_data_docs_pages_are_pointed_at_local_copies(tmp_path):
    """selfalign.audit.offline on a page shaped like great-expectations' (its CDN tags and S3 logo)."""
    from selfalign.audit.offline import ASSETS, make_offline

    site = tmp_path / "local_site"
    (site / "static/images").mkdir(parents=True)
    (site / "static/images/logo-long.png").write_bytes(b"\x89PNG")
    (site / "validations/x").mkdir(parents=True)
    page = site / "validations/x/page.html"
    page.write_text(
        '<html><head><link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>\n'
        '<style>.a{}</style>\n<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>\n'
        '<script src="https://code.jquery.com/jquery-3.7.1.min.js" integrity="x" crossorigin="anonymous"></script>\n'
        '</head><body><img class="NO-CACHE" src="https://bucket.example/logo-long.png?d=1&dataContextId=2" alt="GX">'
        '<a href="https://greatexpectations.io">GX</a><script>$("#t").bootstrapTable({});</script></body></html>')
    assert make_offline(site) == [page]
    html = page.read_text()
    assert not re.search(r"<(?:script|link)[^>]+(?:src|href)=[\"']?https?:", html)
    assert '<link rel="stylesheet" href="../../static/offline/bootstrap.min.css">' in html
    assert html.index("jquery.min.js") < html.index("bootstrap-table-offline.js") < html.index("<style>")
    assert 'src="../../static/images/logo-long.png"' in html and 'href="https://greatexpectations.io"' in html
    for f in ("bootstrap.min.css", "jquery.min.js", "bootstrap.bundle.min.js", "fontawesome/css/all.min.css",
              "fontawesome/webfonts/fa-solid-900.woff2", "vega.js", "vega-embed.js", "bootstrap-table-offline.js"):
        assert (site / ASSETS / f).is_file(), f
