"""The dashboard's files (tracktor/analytics/static/: one page, its script and its style),
served by the API at / and /static/, and the headers every answer carries.

The page is static: all it shows it reads from the JSON API with the app's read token, and
it puts every value into the page as text, never as HTML (dashboard.js). The Content
Security Policy lets it run only its own script, talk only to its own origin, and be
framed by nobody."""
from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"
FILES = {"index.html": "text/html; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8",
         "dashboard.css": "text/css; charset=utf-8"}

HEADERS = {
    # inline styles are allowed for the charts of ?format=html (which run no script)
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def page(parts: list[str]) -> tuple[int, str, str] | None:
    """(200, content type, text) for / and /static/NAME, None for anything else."""
    if parts in ([""], ["index.html"]):
        name = "index.html"
    elif len(parts) == 2 and parts[0] == "static" and parts[1] in FILES:
        name = parts[1]
    else:
        return None
    return 200, FILES[name], (STATIC / name).read_text()
