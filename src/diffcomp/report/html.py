"""Stand-alone HTML pages for the Snakemake report: a table with its caption and protocol, and
the run's config and code version. Every text is escaped; the pages load nothing from outside."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Mapping

import pandas as pd

from ..io import write_text

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-weight: 600; font-size: 1.1em; padding-bottom: .5em; }
th, td { border: 1px solid #bbb; padding: .3em .6em; text-align: right; }
th { background: #f0f0f0; } tbody th { text-align: left; }
p.protocol { max-width: 60em; font-size: .9em; color: #444; }
pre { background: #f6f6f6; padding: 1em; overflow: auto; font-size: .85em; }
dt { font-weight: 600; } dd { margin: 0 0 .5em 1em; font-family: monospace; }
"""


def page(title: str, body: str) -> str:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def table_html(df: pd.DataFrame, title: str, caption: str, floatfmt: str = "{:.2f}") -> str:
    """``df`` as an HTML table (missing values as "--") with ``title`` as its caption and the
    protocol ``caption`` below it."""
    body = df.to_html(na_rep="--", float_format=floatfmt.format, border=0, escape=True)
    # the caption goes right after the opening tag (pandas writes '<table class="dataframe">')
    end = body.index(">") + 1
    body = f"{body[:end]}\n<caption>{html.escape(title)}</caption>{body[end:]}"
    return page(title, f'{body}\n<p class="protocol">{html.escape(caption)}</p>')


def write_table_html(df: pd.DataFrame, path: str | Path, title: str, caption: str) -> None:
    write_text(path, table_html(df, title, caption))


def run_info_html(version: Mapping[str, str], given: str, resolved: str) -> str:
    """The code version (``{what: value}``), the config as given and as resolved."""
    items = "\n".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in version.items())
    return page("Run: config and code version", (
        "<h2>Code version</h2>\n<dl>\n" + items + "\n</dl>\n"
        "<h2>Config as given</h2>\n<pre>" + html.escape(given) + "</pre>\n"
        "<h2>Config resolved (every default filled in)</h2>\n<pre>" + html.escape(resolved) + "</pre>"))
