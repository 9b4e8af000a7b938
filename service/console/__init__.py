"""The web console at `/` and `/console/`, and `/docs` and `/redoc` with their assets served from the package.

Everything the browser loads comes from this server: the console is plain HTML, CSS and
JavaScript (static/), and Swagger UI and ReDoc are vendored builds (static/vendor/, see its
README). Nothing is fetched from the internet at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from models.learners.registry import LEARNERS
from models.recipe import DATASETS, ConfigError, resolve
from service.errors import InvalidInput

STATIC = Path(__file__).parent / "static"
ASSETS = "/console/static"
NO_CACHE = {"Cache-Control": "no-cache"}


def install_console(app: FastAPI) -> None:
    """Mount the console, its assets and the offline API docs on `app` (none of it in the OpenAPI schema)."""
    app.mount(ASSETS, StaticFiles(directory=STATIC), name="console-static")
    index = (STATIC / "index.html").read_text()

    @app.get("/", include_in_schema=False)
    @app.get("/console/", include_in_schema=False)
    def console() -> HTMLResponse:
        return HTMLResponse(index, headers=NO_CACHE)

    @app.get("/console/defaults", include_in_schema=False)
    def defaults(
        algorithm: Annotated[str, Query(max_length=64)] = "maml",
        dataset: Annotated[str, Query(max_length=64)] = "sinusoid",
    ) -> JSONResponse:
        """The start-job form's choices, and every config key of (algorithm, dataset) with its default."""
        try:
            config: dict[str, Any] = resolve(algorithm, dataset, {}).to_json()
        except ConfigError as exc:
            raise InvalidInput(str(exc), param=exc.param, code="invalid_config") from None
        return JSONResponse({"algorithms": sorted(LEARNERS), "datasets": list(DATASETS), "config": config})

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} API",
            swagger_js_url=f"{ASSETS}/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/vendor/swagger-ui/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} API",
            redoc_js_url=f"{ASSETS}/vendor/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/vendor/swagger-ui/favicon-32x32.png", with_google_fonts=False,
        )
