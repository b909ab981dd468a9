"""``/api/docs``: the OpenAPI document as an interactive page (Swagger UI).

Swagger UI's files come from the ``swagger-ui-py`` package (the ``web`` extra), served by
this app under ``/api/docs/static/``: the page loads nothing from anywhere else, and its
validator badge (which would call validator.swagger.io) is off. Without that package the
page lists the operations as plain HTML and says how to get the interactive one.
"""

from __future__ import annotations

import html
import importlib.util
from pathlib import Path
from typing import Any

STATIC_PREFIX = "/api/docs/static"


def swagger_ui_dir() -> Path | None:
    """The directory of Swagger UI's built files, or None when swagger-ui-py is not installed.
    Found without importing the package (its import pulls in its framework adapters)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    return static if (static / "swagger-ui-bundle.js").is_file() else None


# Swagger UI's options (its documented configuration); the document comes from this server.
INIT_JS = """\
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    tryItOutEnabled: false,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
"""


def interactive_html(title: str) -> str:
    title = html.escape(title)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title>\n"
        f'<link rel="icon" href="{STATIC_PREFIX}/favicon-32x32.png">\n'
        f'<link rel="stylesheet" href="{STATIC_PREFIX}/swagger-ui.css">\n'
        '</head>\n<body>\n<div id="swagger-ui"></div>\n'
        '<noscript>The document: <a href="/api/openapi.json">/api/openapi.json</a>.</noscript>\n'
        f'<script src="{STATIC_PREFIX}/swagger-ui-bundle.js"></script>\n'
        '<script src="/api/docs/init.js"></script>\n'
        "</body></html>\n"
    )


def plain_html(doc: dict[str, Any]) -> str:
    """The paths and operations as a plain page: no scripts, nothing fetched from elsewhere."""
    items = []
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            params = ", ".join(p["name"] for p in op.get("parameters", []) if p["in"] == "query")
            query = f" <small>?{html.escape(params)}</small>" if params else ""
            summary = html.escape(op["summary"])
            items.append(f"<li><code>{method.upper()} {html.escape(path)}</code>{query} — {summary}</li>")
    title = html.escape(doc["info"]["title"])
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>\n'
        f"<body><h1>{title}</h1>\n"
        '<p>Machine-readable: <a href="/api/openapi.json">/api/openapi.json</a> (OpenAPI 3.1). '
        "For an interactive page (Swagger UI, served by this server), install the web extra: "
        "<code>pip install 'lwm2m[web]'</code> (it brings swagger-ui-py).</p>\n"
        f"<ul>\n{chr(10).join(items)}\n</ul></body></html>\n"
    )
