"""MkDocs hook: a repository path written as code (`core/tests/test_store.py::test_x`,
`examples/third_party_backend/`) links to that file or folder in the repository (``repo_url``).

Only paths that exist in this checkout are linked, so a path of the reader's own project
(`.github/workflows/contract.yml` "in your repository") stays plain, and a renamed file shows as
plain text rather than as a broken link. Code blocks and code already inside a link are left alone.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

# Inline code alone (no markup inside), outside <pre> blocks and <a> elements.
_SKIP = re.compile(r"(<pre\b.*?</pre>|<a\b.*?</a>)", re.DOTALL)
_CODE = re.compile(r"<code>([^<>]{1,300})</code>")
# A relative path of at least two parts (a folder and a name), optionally with a pytest node id.
_PATH = re.compile(r"[A-Za-z0-9_.+-]+(?:/[A-Za-z0-9_.+-]+)+/?(?:::[A-Za-z0-9_\[\]-]+)?")
_BRANCH = "main"


def _link(text: str, root: Path, repo_url: str) -> str | None:
    """The repository URL of the path ``text`` names, or ``None`` when it names none here."""
    if _PATH.fullmatch(text) is None:
        return None
    relative = text.partition("::")[0].rstrip("/")
    if ".." in relative.split("/") or relative.startswith("."):
        return None
    target = root / relative
    if not target.exists():
        return None
    kind = "tree" if target.is_dir() else "blob"
    return f"{repo_url.rstrip('/')}/{kind}/{_BRANCH}/{relative}"


def on_page_content(html_text: str, page: Any, config: Any, files: Any) -> str:
    """Wrap each inline ``<code>`` that names a repository path in a link to it."""
    repo_url = config.get("repo_url")
    if not repo_url:
        return html_text
    root = Path(config["config_file_path"]).resolve().parent

    def replace(match: re.Match[str]) -> str:
        url = _link(html.unescape(match[1]), root, repo_url)
        if url is None:
            return match[0]
        return f'<a class="repo-path" href="{html.escape(url)}">{match[0]}</a>'

    parts = _SKIP.split(html_text)
    # split() with one group: the odd items are the skipped <pre> and <a> elements.
    return "".join(
        part if index % 2 else _CODE.sub(replace, part) for index, part in enumerate(parts)
    )
