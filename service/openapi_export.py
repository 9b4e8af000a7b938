"""`python -m service.openapi_export openapi.json`: the app's OpenAPI schema, as committed."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from store.settings import Settings


def openapi_schema() -> dict[str, Any]:
    """The schema of an app on throwaway settings (nothing is contacted to build it)."""
    from service.main import create_app

    with tempfile.TemporaryDirectory() as data:
        app = create_app(Settings(data_dir=Path(data), redis_url="redis://127.0.0.1:6379/0"))
        return app.openapi()


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "openapi.json")
    target.write_text(render(openapi_schema()))


if __name__ == "__main__":
    main()
