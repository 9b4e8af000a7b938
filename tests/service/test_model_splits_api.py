"""GET /v1/models/{id} and the model list show which classes went to meta-train, meta-val and
meta-test (null for models without a record of them); names past the cap are counted, not listed."""

from __future__ import annotations

from fastapi.testclient import TestClient

from models.episodes import MAX_LISTED_NAMES, ProblemSpec, SplitNames
from service.main import create_app
from store.db import Job, Model, init_db, session_scope
from store.settings import Settings

IMAGE_SPEC = ProblemSpec(input_shape=(1, 28, 28), output="classification", n_way=5).to_json()


def _model(url: str, splits: dict | None) -> str:
    with session_scope(url) as session:
        job = Job(algorithm="protonet", dataset="omniglot", config={})
        session.add(job)
        session.flush()
        model = Model(job_id=job.id, algorithm="protonet", dataset="omniglot", spec=IMAGE_SPEC, learner_config={},
                      metrics={"accuracy": 0.9, "evaluated_on": "test"}, artifact="none", splits=splits)
        session.add(model)
        session.flush()
        return model.id


def test_the_model_object_lists_its_splits(tmp_path):
    settings = Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/13")
    init_db(settings.sqlalchemy_url)
    characters = [f"Greek/character{i:02d}" for i in range(1, 11)]
    names = SplitNames.of("classes", {"train": [0, 1, 2, 3, 4, 5], "val": [6, 7], "test": [8, 9]}, characters)
    with_splits = _model(settings.sqlalchemy_url, names.to_json())
    many = [f"class_{i}" for i in range(MAX_LISTED_NAMES + 5)]
    capped = _model(settings.sqlalchemy_url, SplitNames.of("classes", {"train": list(range(len(many)))}, many).to_json())
    older = _model(settings.sqlalchemy_url, None)
    with TestClient(create_app(settings)) as c:
        body = c.get(f"/v1/models/{with_splits}").json()
        assert body["splits"] == {
            "kind": "classes",
            "train": {"count": 6, "names": characters[:6]},
            "val": {"count": 2, "names": ["Greek/character07", "Greek/character08"]},
            "test": {"count": 2, "names": ["Greek/character09", "Greek/character10"]},
        }
        assert body["metrics"]["evaluated_on"] == "test"
        big = c.get(f"/v1/models/{capped}").json()["splits"]
        assert big["train"]["count"] == MAX_LISTED_NAMES + 5 and big["train"]["names"] == many[:MAX_LISTED_NAMES]
        assert big["val"] == big["test"] == {"count": 0, "names": []}
        assert c.get(f"/v1/models/{older}").json()["splits"] is None
        listed = {m["id"]: m["splits"] for m in c.get("/v1/models").json()["data"]}
        assert listed[with_splits] == body["splits"] and listed[older] is None
