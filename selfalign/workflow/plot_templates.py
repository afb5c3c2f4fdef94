"""How `dvc plots show` draws this pipeline's plots, offline.

- `.dvc/plots/bar_ci.json`: horizontal bars in the data's order with 95% intervals (`lower`, `upper`
  columns) as error bars and chance (`chance` column, where there is one) as a red tick; plots/eval.csv.
- `.dvc/plots/bar_ordered.json`: horizontal bars in the data's order (principles 1, 2, ..., 16, not
  1, 10, 11, ...); plots/principle_citations.csv.
- `.dvc/plots/offline.html`: the page DVC fills with the plots (`plots.html_template` in .dvc/config),
  with vega, vega-lite and vega-embed inlined from the copies Snakemake ships in its package (its
  report uses them), so the page renders with no network. DVC's own page loads them from a CDN and is
  blank offline.

`python -m selfalign.workflow.dvcgen` writes these files with dvc.yaml, and `--check` fails when they are stale.
"""
from __future__ import annotations

import json
from pathlib import Path

TEMPLATE_DIR = Path(".dvc/plots")
HTML_TEMPLATE = "offline.html"  # relative to .dvc/, as .dvc/config names it: plots/offline.html

_Y = {"field": "<DVC_METRIC_Y>", "type": "nominal", "title": "<DVC_METRIC_Y_LABEL>", "sort": None}
# What both bar charts share: vega-lite v5, the data and title DVC fills in, 16 px a bar.
_BAR = {
    "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
    "data": {"values": "<DVC_METRIC_DATA>"},
    "title": {"text": "<DVC_METRIC_TITLE>", "anchor": "middle"},
    "width": 420,
    "height": {"step": 16},
}

TEMPLATES: dict[str, dict] = {
    "bar_ci": {
        **_BAR,
        "transform": [
            {"calculate": "toNumber(datum['<DVC_METRIC_X>'])", "as": "value_n"},
            *({"calculate": f"datum.{c} === '' || datum.{c} == null ? null : toNumber(datum.{c})", "as": f"{c}_n"}
              for c in ("lower", "upper", "chance")),
        ],
        "encoding": {"y": _Y, "yOffset": {"field": "rev", "sort": []}},
        "layer": [
            {"mark": {"type": "bar", "opacity": 0.8},
             "encoding": {
                 "x": {"field": "value_n", "type": "quantitative", "title": "<DVC_METRIC_X_LABEL>",
                       "scale": {"domain": [0, 1]}},
                 "color": {"field": "checkpoint", "type": "nominal", "sort": None},
                 "tooltip": [{"field": "<DVC_METRIC_Y>", "type": "nominal"}, {"field": "rev", "type": "nominal"},
                             {"field": "value_n", "type": "quantitative", "title": "value"},
                             {"field": "lower_n", "type": "quantitative", "title": "95% lower"},
                             {"field": "upper_n", "type": "quantitative", "title": "95% upper"},
                             {"field": "chance_n", "type": "quantitative", "title": "chance"}]}},
            {"mark": {"type": "rule", "color": "black"},
             "transform": [{"filter": "isValid(datum.lower_n) && isValid(datum.upper_n)"}],
             "encoding": {"x": {"field": "lower_n", "type": "quantitative"}, "x2": {"field": "upper_n"}}},
            {"mark": {"type": "tick", "color": "#d62728", "thickness": 2},
             "transform": [{"filter": "isValid(datum.chance_n)"}],
             "encoding": {"x": {"field": "chance_n", "type": "quantitative"}}},
        ],
    },
    "bar_ordered": {
        **_BAR,
        "mark": {"type": "bar"},
        "encoding": {
            "x": {"field": "<DVC_METRIC_X>", "type": "quantitative", "title": "<DVC_METRIC_X_LABEL>"},
            "y": _Y,
            "yOffset": {"field": "rev", "sort": []},
            "color": {"field": "rev", "type": "nominal", "sort": []},
        },
    },
}

# The libraries DVC's page loads from a CDN (dvc_render.vega.VegaRenderer.SCRIPTS), from Snakemake's package.
_LIBS = ("vega", "vega-lite", "vega-embed")

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
    <!-- vega, vega-lite and vega-embed, inlined from Snakemake's package (snakemake/assets/data) so the page
         renders offline; licences (BSD-3-Clause) at the end of the page. Written by `python -m selfalign.workflow.dvcgen`. -->
    LIBS
    <style>
        body { font-family: system-ui, sans-serif; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
LICENSES
</body>
</html>
"""


def _assets() -> Path:
    import snakemake

    return Path(snakemake.__file__).resolve().parent / "assets" / "data"


def offline_html() -> str:
    """DVC's HTML page with the vega libraries inlined. DVC fills {plot_divs} and {refresh_tag}; the
    {scripts} placeholder (DVC's CDN script tags) is left out on purpose."""
    root = _assets()
    libs, licenses = [], []
    for name in _LIBS:
        js = (root / name / f"{name}.js").read_text(encoding="utf-8")
        for bad in ("</script", "{plot_divs}", "{scripts}", "{refresh_tag}"):
            if bad in js:
                raise ValueError(f"{root / name}/{name}.js contains {bad!r}: it cannot be inlined as it is")
        libs.append(f'<script type="text/javascript">\n{js}\n</script>')
        lic = (root / name / "LICENSE").read_text(encoding="utf-8").replace("--", "- -")
        licenses.append(f"<!-- {name}:\n{lic}\n-->")
    return PAGE.replace("LIBS", "\n    ".join(libs)).replace("LICENSES", "\n".join(licenses))


def files() -> dict[str, str]:
    """{path relative to the repository root: content} of every file this module writes."""
    out = {str(TEMPLATE_DIR / f"{name}.json"): json.dumps(t, indent=1) + "\n" for name, t in TEMPLATES.items()}
    out[str(TEMPLATE_DIR / HTML_TEMPLATE)] = offline_html()
    return out
