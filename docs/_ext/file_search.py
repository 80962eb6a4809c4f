"""MkDocs hook: the search index as a script, for the site opened from a folder (file://).

On ``file://`` the Material theme reads the search index from ``search/search_index.js`` (a
script setting ``__index``), because a page opened from a folder cannot fetch
``search_index.json``. Material's ``offline`` plugin would write it, but it also loads a Web
Worker shim from unpkg.com at every page view; docs/javascripts/file-worker.js is that shim,
served from the site itself. Nothing changes for the site served over http.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def on_post_build(config: Any) -> None:
    """Write ``search/search_index.js`` beside the ``search_index.json`` the search plugin wrote
    (hooks run after the plugins)."""
    folder = Path(config["site_dir"]) / "search"
    index = folder / "search_index.json"
    if not index.is_file():
        return
    data = json.loads(index.read_text(encoding="utf-8"))  # a broken index fails the build here
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    # A "</" inside a script would end it early in some contexts; the escape keeps the same JSON.
    text = text.replace("</", "<\\/")
    (folder / "search_index.js").write_text(f"var __index = {text};\n", encoding="utf-8")
