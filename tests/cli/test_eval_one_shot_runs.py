"""`fewshot eval one-shot-runs DIR MODEL` on runs built in Lake et al.'s format from alphabets
the model never trained on, with a model trained by the real pipeline function."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli.main import cli
from models.omniglot import load_omniglot, split_characters
from models.one_shot_runs import build_runs, read_runs
from models.recipe import resolve
from store.db import Job, init_db, session_scope
from store.settings import Settings
from workers.pipelines import train_job

CONFIG = {"steps": 30, "meta_batch_size": 1, "n_way": 20, "k_query": 3, "channels": 8, "eval_episodes": 5,
          "split_by": "alphabet", "meta_lr": 0.005, "augment": False,
          "rotations": False}  # augment pays off over longer runs


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, omniglot_dir, dataset_cache):
    data = load_omniglot(omniglot_dir, dataset_cache)
    test_alphabets = sorted({data.alphabets[i] for i in split_characters(data, by="alphabet", seed=0)["test"]})
    out = tmp_path_factory.mktemp("one-shot-runs")
    build_runs(omniglot_dir, out, test_alphabets, n_runs=3)
    return out


def test_runs_are_written_in_the_one_shot_format(runs_dir):
    runs = read_runs(runs_dir)
    assert [r.name for r in runs] == ["run01", "run02", "run03"]
    first = (runs_dir / "run01" / "class_labels.txt").read_text().splitlines()
    assert len(first) == 20 and first[0].startswith("run01/test/item") and " run01/training/class" in first[0]
    for run in runs:
        assert len(run.training) == 20 and len(run.test) == 20 and sorted(run.answers) == list(range(20))
        assert all(p.exists() for p in run.training + run.test)


def test_fewshot_eval_one_shot_runs_prints_each_runs_error_and_the_mean(runs_dir, tmp_path, omniglot_dir, monkeypatch):
    monkeypatch.setenv("FEWSHOT_OMNIGLOT_DIR", str(omniglot_dir))
    monkeypatch.setenv("FEWSHOT_DATA_DIR", str(tmp_path))  # the command sets it too; restored after the test
    settings = Settings(data_dir=tmp_path, omniglot_dir=omniglot_dir)
    init_db(settings.sqlalchemy_url)
    recipe = resolve("protonet", "omniglot", CONFIG)
    with session_scope(settings.sqlalchemy_url) as session:
        job = Job(algorithm="protonet", dataset="omniglot", config=recipe.to_json(), total_steps=recipe.training.steps)
        session.add(job)
        session.flush()
        job_id = job.id
    model_id = train_job(job_id, settings)
    assert model_id is not None
    result = CliRunner().invoke(cli, ["eval", "one-shot-runs", str(runs_dir), model_id, "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["run01", "run02", "run03"]
    mean_error = float(lines[-1].split()[2].rstrip("%"))
    assert mean_error < 100 * (1 - 1 / 20) - 15  # chance error is 95%; a 30-step ProtoNet does far better

    as_json = CliRunner().invoke(cli, ["eval", "one-shot-runs", str(runs_dir), model_id, "--data-dir", str(tmp_path),
                                       "--json"])
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.output)  # the JSON alone: no per-run lines before it
    assert report["model_id"] == model_id and [r["run"] for r in report["runs"]] == ["run01", "run02", "run03"]
    assert report["mean_error"] == pytest.approx(mean_error / 100, abs=1e-4)  # the same runs, the same model

    missing = CliRunner().invoke(cli, ["eval", "one-shot-runs", str(runs_dir), "mdl_nope", "--data-dir", str(tmp_path)])
    assert missing.exit_code == 2 and "no model mdl_nope" in missing.output
