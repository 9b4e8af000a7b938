"""docker-compose.yml, the Dockerfile and docker/init.sh read against the code: no Docker engine
runs here, so a compose CLI parses the file (Debian's `docker-compose` needs no engine), and every
variable, `fewshot` command, option and queue they name must exist in the code, with click parsing
each command line exactly as the container would run it."""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import botocore
import click
import pytest
import typer
import yaml
from celery.bin.celery import celery as celery_cli

from cli.main import cli
from store.queue import ADAPT_QUEUE, TRAIN_QUEUE
from store.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())  # YAML merge keys (<<) resolved
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
INIT_SCRIPT = ROOT / "docker" / "init.sh"
# The secrets a deployment may set; `docker compose up` starts without them (no manual step).
SECRETS = {"MINIO_ROOT_PASSWORD": "a-test-password", "FLOWER_BASIC_AUTH": "admin:a-test-password"}
ONE_SHOT = {"minio-bucket", "init"}  # run once and exit; every other service stays up


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) per Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _defaults(value: str) -> str:
    """A compose value with each `${NAME:-default}` as its default (what runs with nothing set)."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def _compose_cli() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


def test_a_compose_cli_parses_the_file_with_nothing_set_and_with_the_secrets():
    compose = _compose_cli()
    if compose is None:
        pytest.skip("no compose CLI on PATH (`apt-get install docker-compose`; .ci/run installs it)")
    config = [*compose, "-f", str(COMPOSE_FILE), "config"]
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    bare = subprocess.run(config, env=env, capture_output=True, text=True, timeout=60)
    assert bare.returncode == 0 and not bare.stderr.strip(), bare.stderr  # no variable unset, no warning
    done = subprocess.run(config, env={**env, **SECRETS}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)["services"]
    assert resolved["minio"]["environment"]["MINIO_ROOT_PASSWORD"] == SECRETS["MINIO_ROOT_PASSWORD"]
    assert resolved["flower"]["environment"]["FLOWER_BASIC_AUTH"] == SECRETS["FLOWER_BASIC_AUTH"]


def _names_read_by_settings() -> set[str]:
    names = set()
    for field_name, field in Settings.model_fields.items():
        aliases = getattr(field.validation_alias, "choices", None)
        names.update(aliases if aliases else [f"FEWSHOT_{field_name.upper()}"])
    return names


def _source_text(folder: Path) -> str:
    return "\n".join(path.read_text() for path in folder.rglob("*.py"))


def test_every_variable_named_for_fewshot_is_read_by_the_code():
    named = {name for service in SERVICES.values() for name in service.get("environment", {})}
    for instruction, arguments in _dockerfile():
        if instruction == "ENV":
            named.update(word.split("=", 1)[0] for word in arguments.split())
    ours = {n for n in named if n.startswith("FEWSHOT_") or n in ("REDIS_URL", "DATABASE_URL")}
    aws = {n for n in named if n.startswith("AWS_")}
    assert {"FEWSHOT_DEVICE", "FEWSHOT_ARTIFACT_URL", "REDIS_URL", "DATABASE_URL"} <= ours and aws

    source = "\n".join(_source_text(ROOT / package) for package in ("cli", "service", "store", "workers", "models"))
    unread = {n for n in ours if n not in _names_read_by_settings() and f'"{n}"' not in source}
    assert not unread, f"named in the compose file or Dockerfile, read by no code: {sorted(unread)}"
    botocore_source = _source_text(Path(botocore.__file__).parent)  # s3fs's credentials and region
    assert not {n for n in aws if f"'{n}'" not in botocore_source}


def _parse_fewshot(argv: list[str]) -> typer.Context:
    """The context typer builds for `fewshot <argv>` without running it; raises on an unknown
    command, option or value (typer carries its own click, hence typer's classes here)."""
    command: Any = typer.main.get_command(cli)
    path = ["fewshot"]
    while isinstance(command, typer.core.TyperGroup):
        sub = command.get_command(typer.Context(command), argv[0]) if argv else None
        assert sub is not None, f"`{' '.join(path)}` has no command {argv[:1]}"
        path.append(argv[0])
        command, argv = sub, argv[1:]
    context: typer.Context = command.make_context(" ".join(path), list(argv))
    return context


def _commands() -> dict[str, list[str]]:
    """Every command line that starts `fewshot`: the services' and the init script's."""
    lines = {name: list(s["command"]) for name, s in SERVICES.items() if s.get("command", [None])[0] == "fewshot"}
    for number, line in enumerate(INIT_SCRIPT.read_text().splitlines(), 1):
        if line.startswith("fewshot "):
            lines[f"init.sh:{number}"] = shlex.split(line)
    return lines


def test_every_fewshot_command_parses_and_the_workers_cover_every_queue():
    commands = _commands()
    assert {"api", "worker-train", "worker-adapt"} <= set(commands), commands
    assert ["fewshot", "db", "upgrade"] in commands.values(), "init.sh applies the schema"
    assert any(argv[1:4] == ["keys", "create", "--if-none"] for argv in commands.values()), "init.sh makes the first key"
    queues: dict[str, set[str]] = {}
    for where, argv in commands.items():
        try:
            context = _parse_fewshot(argv[1:])
        except Exception as exc:  # typer's click.UsageError: an unknown command, option or value
            raise AssertionError(f"{where}: `{shlex.join(argv)}` does not parse: {exc}") from exc
        if argv[1] == "worker":
            queues[where] = set(context.params["queues"].split(","))
    assert queues == {"worker-train": {TRAIN_QUEUE}, "worker-adapt": {ADAPT_QUEUE}}
    assert SERVICES["init"]["command"] == ["fewshot-init"]
    assert ("COPY", "docker/init.sh /usr/local/bin/fewshot-init") in _dockerfile()
    assert os.access(INIT_SCRIPT, os.X_OK)


def test_workers_run_where_they_should_and_every_fewshot_process_waits_for_init():
    train, adapt = SERVICES["worker-train"], SERVICES["worker-adapt"]
    assert train["environment"]["FEWSHOT_DEVICE"] == "cuda" and adapt["environment"]["FEWSHOT_DEVICE"] == "cpu"
    gpus = train["deploy"]["resources"]["reservations"]["devices"]
    assert gpus == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert _defaults(train["build"]["args"]["TORCH_BUILD"]).startswith("cu")
    for name in ("init", "api", "worker-adapt", "flower"):
        assert SERVICES[name]["build"]["args"]["TORCH_BUILD"] == "cpu", name
    for name in ("api", "worker-train", "worker-adapt"):
        assert SERVICES[name]["depends_on"]["init"] == {"condition": "service_completed_successfully"}, name


def test_long_running_services_restart_and_report_their_health():
    for name, service in SERVICES.items():
        assert service.get("restart") == (None if name in ONE_SHOT else "unless-stopped"), name
        if name not in ONE_SHOT | {"flower"}:
            assert service["healthcheck"]["test"], name
    assert "http://127.0.0.1:8000/readyz" in " ".join(SERVICES["api"]["healthcheck"]["test"])
    assert '"/readyz"' in (ROOT / "service" / "routes" / "health.py").read_text()
    for name in ("worker-train", "worker-adapt"):
        kind, line = SERVICES[name]["healthcheck"]["test"]
        argv = shlex.split(line.replace("$$", "$"))
        assert kind == "CMD-SHELL" and argv[:3] == ["celery", "-A", "workers.app"], line
        inspect = celery_cli.get_command(click.Context(celery_cli), argv[3])
        assert inspect is not None
        context = inspect.make_context(argv[3], argv[4:], parent=click.Context(celery_cli))
        assert context.params["command"] == "ping" and context.params["destination"] == ["celery@$HOSTNAME"]
    workers_app = ast.parse((ROOT / "workers" / "app.py").read_text())
    assert any(isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "app" for t in node.targets)
               for node in workers_app.body), "celery -A workers.app needs workers.app.app"


def test_flower_needs_basic_auth_and_listens_on_loopback():
    flower = SERVICES["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "${FLOWER_BASIC_AUTH:-}"
    assert '--basic-auth="$$auth"' in flower["command"][0] and "/data/flower/basic_auth" in flower["command"][0]
    # init makes it when the variable is unset, in the data directory that compose puts on /data
    assert '"${FEWSHOT_DATA_DIR:-/data}/flower/basic_auth"' in INIT_SCRIPT.read_text()
    assert SERVICES["init"]["environment"]["FEWSHOT_DATA_DIR"] == "/data" and "data:/data" in flower["volumes"]
    assert flower["depends_on"]["init"] == {"condition": "service_completed_successfully"}
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    assert {"redis", "postgres", "minio"}.isdisjoint(name for name, s in SERVICES.items() if s.get("ports"))


def test_the_image_runs_as_a_user_and_takes_torch_from_the_build_chosen():
    instructions = _dockerfile()
    users = [arguments for instruction, arguments in instructions if instruction == "USER"]
    assert users and users[-1] not in ("root", "0"), users
    setup = next(arguments for instruction, arguments in instructions if "useradd" in arguments)
    assert "useradd --uid 10001" in setup and f"chown {users[-1]}:{users[-1]} /data" in setup

    assert ("ARG", "TORCH_BUILD=cpu") in instructions
    pin = next(d for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
               if d.startswith("torch=="))
    torch_install = next(arguments for instruction, arguments in instructions if "torch==" in arguments)
    assert f"pip install {pin} --index-url \"https://download.pytorch.org/whl/${{TORCH_BUILD}}\"" in torch_install


def test_the_image_holds_every_package_it_installs():
    copied = {arguments.split()[0] for instruction, arguments in _dockerfile() if instruction == "COPY"}
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".fewshot"} <= ignored
    for source in copied:
        assert (ROOT / source).exists() and source.split("/")[0] not in ignored, source
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    folders = {name.rstrip("*") for name in packages["include"]} - {"fewshot_client"} | {"client"}
    assert folders <= copied, folders - copied
