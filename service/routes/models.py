"""Meta-trained models."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import SessionDep
from service.errors import NotFound
from service.routes.common import errors
from service.schemas import ModelPublic
from store.db import Model

router = APIRouter(prefix="/v1/models", tags=["models"])


def model_public(model: Model) -> ModelPublic:
    spec = model.spec
    classification = spec["output"] == "classification"
    return ModelPublic(
        id=model.id, job_id=model.job_id, algorithm=model.algorithm, dataset=model.dataset,
        input_shape=list(spec["input_shape"]), output=spec["output"],
        ways=spec["n_way"] if classification else None,
        output_dim=None if classification else spec["output_dim"],
        accepts_images=spec.get("image") is not None,
        config=model.learner_config, metrics=model.metrics, created_at=model.created_at,
    )


def get_model_or_404(session: SessionDep, model_id: str) -> Model:
    model = session.get(Model, model_id)
    if model is None:
        raise NotFound("model", model_id, param="model_id")
    return model


@router.get("/{model_id}", operation_id="get_model", response_model=ModelPublic, responses=errors(404))
def get_model(model_id: str, session: SessionDep) -> ModelPublic:
    return model_public(get_model_or_404(session, model_id))
