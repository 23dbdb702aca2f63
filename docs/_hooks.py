"""mkdocs hooks for the site (mkdocs.yml ``hooks:``).

* Links out of docs/ (``../examples/policy.toml``), which work on GitHub and in a checkout, point at the file in the
  repository (``repo_url``): on the built site such a file is not a page.
* Sphinx roles left in docstrings (``:class:`~audit.x.Y```, which mkdocstrings renders as the literal role and the
  code) are shown as the code alone.
"""

from __future__ import annotations

import re

_OUTSIDE = re.compile(r"\]\(\.\./([^)#\s]+)(#[^)\s]*)?\)")
_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj|ref):(<code>)~?")


def on_page_markdown(markdown: str, *, page, config, files) -> str:
    repo = str(config.get("repo_url") or "").rstrip("/")
    if not repo:
        return markdown
    return _OUTSIDE.sub(lambda m: f"]({repo}/blob/main/{m.group(1)}{m.group(2) or ''})", markdown)


def on_page_content(html: str, *, page, config, files) -> str:
    return _ROLE.sub(r"\1", html)
