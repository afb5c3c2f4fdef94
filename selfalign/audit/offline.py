"""great-expectations data docs that render offline.

GX's pages load Bootstrap, jQuery, Font Awesome, bootstrap-table and vega from CDNs, so offline they are
unstyled and the index page's tables (filled by bootstrap-table from inline data) are empty.
`make_offline(site)` copies local copies into `<site>/static/offline/` and points every page at them:

- Bootstrap 4.5 CSS and JS (with Popper), jQuery 3.7 and Font Awesome 6.2 from their XStatic packages
  (pinned in requirements.txt); vega, vega-lite and vega-embed from Snakemake's package;
- instead of bootstrap-table (on no package index), `bootstrap-table-offline.js` below: a few lines
  that draw a table from the same options (columns, data, sort, clickable rows) without its search,
  filter and paging controls.

Every <link> and <script> that names an http(s) address is removed, and an image fetched from one (GX's
logo) is shown from the copy in the site's static/images/; nothing else in the pages changes.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

ASSETS = "static/offline"
_REMOTE_LINK = re.compile(r"""<link\b[^>]*\bhref=["']?https?://[^>]*>\s*""", re.IGNORECASE)
_REMOTE_SCRIPT = re.compile(r"""<script\b[^>]*\bsrc=["']?https?://[^>]*>\s*</script>\s*""", re.IGNORECASE)
# GX's logo comes from its web-assets bucket (with the data context's id in the query); the site has a copy.
_REMOTE_IMG = re.compile(r"""(<img\b[^>]*\bsrc=)["']https?://[^"']*/([\w.-]+\.(?:png|svg|gif|ico))(?:\?[^"']*)?["']""",
                         re.IGNORECASE)

TABLE_JS = """/* Offline stand-in for bootstrap-table, written by selfalign (selfalign/audit/offline.py): draws a table from
   the options great-expectations passes (columns, data, sortName/sortOrder, rowAttributes, rowStyle) and
   fires click-row.bs.table on a click. No search, filters or paging. */
(function ($) {
  if (!$ || $.fn.bootstrapTable) { return; }
  function fn(f) { return typeof f === "string" ? window[f] : f; }
  $.fn.bootstrapTable = function (options) {
    if (typeof options !== "object" || options === null) { return this; }  /* methods: nothing to do */
    return this.each(function () {
      var $table = $(this).addClass("table table-hover").empty();
      var columns = options.columns || [], data = (options.data || []).slice();
      var sortCol = columns.filter(function (c) { return c.field === options.sortName; })[0];
      if (sortCol) {
        var key = sortCol.sortName || sortCol.field, sign = options.sortOrder === "desc" ? -1 : 1;
        data.sort(function (a, b) { return a[key] < b[key] ? -sign : a[key] > b[key] ? sign : 0; });
      }
      var $head = $("<tr>");
      columns.forEach(function (c) { $head.append($("<th>").text(c.title || "")); });
      $table.append($("<thead>").append($head));
      var $body = $("<tbody>"), attrs = fn(options.rowAttributes), style = fn(options.rowStyle);
      data.forEach(function (row, i) {
        var $tr = $("<tr>");
        if (attrs) { $tr.attr(attrs(row, i) || {}); }
        if (style) { $tr.css((style(row, i) || {}).css || {}); }
        columns.forEach(function (c) { $tr.append($("<td>").html(row[c.field] == null ? "" : String(row[c.field]))); });
        $tr.on("click", function () { $table.trigger("click-row.bs.table", [row, $tr]); });
        $body.append($tr);
      });
      $table.append($body);
    });
  };
})(window.jQuery);
"""


def _sources() -> dict[str, Path]:
    """{path under ASSETS: source file or folder}."""
    import snakemake
    import xstatic.pkg.bootstrap as bootstrap
    import xstatic.pkg.font_awesome as font_awesome
    import xstatic.pkg.jquery as jquery

    vega = Path(snakemake.__file__).resolve().parent / "assets" / "data"
    bs, fa = Path(bootstrap.BASE_DIR), Path(font_awesome.BASE_DIR)
    return {
        "bootstrap.min.css": bs / "css" / "bootstrap.min.css",
        "jquery.min.js": Path(jquery.BASE_DIR) / "jquery.min.js",
        "bootstrap.bundle.min.js": bs / "js" / "bootstrap.bundle.min.js",
        "fontawesome/css/all.min.css": fa / "css" / "all.min.css",
        "fontawesome/webfonts": fa / "webfonts",
        "fontawesome/LICENSE.txt": fa / "LICENSE.txt",
        **{f"{lib}.js": vega / lib / f"{lib}.js" for lib in ("vega", "vega-lite", "vega-embed")},
    }


# In load order: jQuery before Bootstrap's JS and the table stand-in that extend it.
_CSS = ("bootstrap.min.css", "fontawesome/css/all.min.css")
_JS = ("jquery.min.js", "bootstrap.bundle.min.js", "bootstrap-table-offline.js", "vega.js", "vega-lite.js",
       "vega-embed.js")


def make_offline(site: str | os.PathLike) -> list[Path]:
    """Rewrite every HTML page under `site` (a GX data docs site) to use local copies; returns the pages."""
    site = Path(site)
    assets = site / ASSETS
    for rel, src in _sources().items():
        dst = assets / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)
    (assets / "bootstrap-table-offline.js").write_text(TABLE_JS, encoding="utf-8")
    pages = sorted(p for p in site.rglob("*.html") if assets not in p.parents)
    for page in pages:
        html = page.read_text(encoding="utf-8")
        images = Path(os.path.relpath(site / "static" / "images", page.parent)).as_posix()

        def local_image(m: re.Match) -> str:
            copy = site / "static" / "images" / m.group(2)
            return f'{m.group(1)}"{images}/{m.group(2)}"' if copy.exists() else m.group(0)

        html = _REMOTE_IMG.sub(local_image, html)
        first = [m.start() for rx in (_REMOTE_LINK, _REMOTE_SCRIPT) if (m := rx.search(html))]
        if not first:
            continue
        at = min(first)
        rel = Path(os.path.relpath(assets, page.parent)).as_posix()
        local = "".join(f'<link rel="stylesheet" href="{rel}/{f}">\n' for f in _CSS) + "".join(
            f'<script src="{rel}/{f}"></script>\n' for f in _JS)
        html = html[:at] + "\x00" + html[at:]
        html = _REMOTE_SCRIPT.sub("", _REMOTE_LINK.sub("", html)).replace("\x00", local)
        page.write_text(html, encoding="utf-8")
    return pages
