"""Meta-trained models: list, read, delete (with their tasks)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.episodes import ProblemSpec
from models.weights import FORMAT, weights_bytes
from service.deps import ArtifactsDep, PredictorDep, SessionDep, TenantDep
from service.errors import NotFound
from service.routes.common import Cursor, ObjectId, errors
from service.schemas import ModelPublic, ModelSplitsPublic, ModelsPublic
from store.artifacts import model_prefix, task_prefix
from store.db import Model, Task

router = APIRouter(prefix="/v1/models", tags=["models"])


def training_tasks(session: Session, model_ids: list[str]) -> dict[str, dict[str, str]]:
    """Training tasks of multi-task models: model id -> {task name -> task id}."""
    found: dict[str, dict[str, str]] = {}
    query = select(Task.model_id, Task.name, Task.id).where(Task.model_id.in_(model_ids), Task.name.is_not(None))
    for model_id, name, task_id in session.execute(query):
        found.setdefault(model_id, {})[name] = task_id
    return found


def model_public(model: Model, tasks: dict[str, str] | None = None) -> ModelPublic:
    spec = model.spec
    modality = ProblemSpec.from_json(spec).modality
    classification = spec["output"] == "classification"
    return ModelPublic(
        id=model.id, job_id=model.job_id, algorithm=model.algorithm, dataset=model.dataset,
        input_shape=list(spec["input_shape"]), output=spec["output"],
        ways=spec["n_way"] if classification else None,
        max_classes=(spec.get("max_classes") or spec["n_way"]) if classification else None,
        output_dim=None if classification else spec["output_dim"],
        accepts_images=modality.name == "image", **modality.public(),
        config=model.learner_config, metrics=model.metrics, training_tasks=tasks or {},
        splits=ModelSplitsPublic.model_validate(model.splits) if model.splits is not None else None,
        created_at=model.created_at,
    )


def get_model_or_404(session: Session, model_id: str, tenant: str) -> Model:
    model = session.get(Model, model_id)
    if model is None or model.tenant_id != tenant:
        raise NotFound("model", model_id, param="model_id")
    return model


@router.get("", operation_id="list_models", response_model=ModelsPublic, responses=errors())
def list_models(
    session: SessionDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Cursor = None,
) -> ModelsPublic:
    query = select(Model).where(Model.tenant_id == tenant).order_by(Model.id.desc()).limit(limit + 1)
    if after is not None:
        query = query.where(Model.id < after)
    rows = list(session.scalars(query))
    named = training_tasks(session, [m.id for m in rows[:limit]])
    return ModelsPublic(data=[model_public(m, named.get(m.id)) for m in rows[:limit]], has_more=len(rows) > limit)


@router.get("/{model_id}", operation_id="get_model", response_model=ModelPublic, responses=errors(404))
def get_model(model_id: ObjectId, session: SessionDep, tenant: TenantDep) -> ModelPublic:
    model = get_model_or_404(session, model_id, tenant)
    return model_public(model, training_tasks(session, [model.id]).get(model.id))


@router.delete("/{model_id}", status_code=204, operation_id="delete_model", responses=errors(404))
def delete_model(
    model_id: ObjectId, request: Request, session: SessionDep, tenant: TenantDep, store: ArtifactsDep, predictor: PredictorDep
) -> Response:
    """The model, its tasks and all their artifacts."""
    model = get_model_or_404(session, model_id, tenant)
    task_ids = list(session.scalars(select(Task.id).where(Task.model_id == model_id)))
    for task in session.scalars(select(Task).where(Task.model_id == model_id)):
        session.delete(task)
    session.flush()
    session.delete(model)
    session.commit()
    for task_id in task_ids:
        predictor.forget_task(task_id)
        store.delete_prefix(task_prefix(task_id))
    predictor.forget_model(model_id)
    request.app.state.hot.publish("model", model_id)  # every API process drops the model's rows and tasks
    store.delete_prefix(model_prefix(model_id))
    return Response(status_code=204)


WEIGHTS_DESCRIPTION = (
    f"the meta-trained weights as a safetensors file; its metadata (format `{FORMAT}`) holds `algorithm`, and "
    "`spec` and `config` as JSON: what `models.weights.read_weights` (or `models.learners.load_learner`) rebuilds "
    "the network from"
)


@router.get(
    "/{model_id}/weights", operation_id="get_model_weights", response_class=Response,
    responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                     "description": WEIGHTS_DESCRIPTION},
               **errors(404)},
)
def get_model_weights(model_id: ObjectId, session: SessionDep, tenant: TenantDep, store: ArtifactsDep) -> Response:
    model = get_model_or_404(session, model_id, tenant)
    theta = store.load(model.artifact)
    body = weights_bytes(model.algorithm, model.spec, model.learner_config, theta, model_id=model.id,
                         dataset=model.dataset)
    return Response(body, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{model.id}.safetensors"'})
