"""`/docs` and `/redoc` work offline: every asset they load is served by the server itself."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

_REFERENCES = re.compile(r"""(?:src|href|spec-url)=["']([^"']+)["']|url: ?'([^']+)'""")
_ASSET_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def references(html: str) -> list[str]:
    return [a or b for a, b in _REFERENCES.findall(html)]


def test_docs_pages_load_only_local_assets(client: TestClient) -> None:
    for page, expected in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        reply = client.get(page)
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
        found = references(reply.text)
        assert any(url.endswith(expected) for url in found), found
        assert "/openapi.json" in found
        assert "http://" not in reply.text and "https://" not in reply.text  # nothing from a CDN
        for url in found:
            assert url.startswith("/") and not url.startswith("//"), url
            asset = client.get(url)
            assert asset.status_code == 200, url
            suffix = url[url.rfind("."):]
            if suffix in _ASSET_TYPES:
                assert _ASSET_TYPES[suffix] in asset.headers["content-type"], (url, asset.headers["content-type"])
                assert len(asset.content) > 1000, url  # the asset itself, not an error page
    assert "SwaggerUIBundle" in client.get("/docs-assets/swagger-ui-bundle.js").text
    assert "/docs" not in client.get("/openapi.json").json()["paths"]
