"""Request and response bodies of API v1, named by role (Create, Public, ...)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from models.augment import MAX_TTA_VIEWS
from models.episodes import MAX_LISTED_NAMES
from models.learners.base import MAX_ADAPT_STEPS, MAX_INNER_LR
from models.learners.registry import LEARNERS
from models.recipe import DATASETS, UPLOADED_PREFIX
from service.inputs import MAX_ITEMS

# Object ids (job_..., ds_..., tsk_...) and built-in dataset names: path ids and `after` cursors.
ID_PATTERN = r"^[A-Za-z0-9_-]+$"
ID_MAX_LENGTH = 64
UPLOADED_DATASET_PATTERN = rf"^{UPLOADED_PREFIX}[A-Za-z0-9_-]+$"

# Declared in the schema only: the routes check these themselves, with errors (code
# invalid_config, empty_inputs) that say what to fix.
ALGORITHM_SCHEMA = {"enum": sorted(LEARNERS)}
DATASET_SCHEMA = {
    "anyOf": [
        {"type": "string", "enum": list(DATASETS)},
        {"type": "string", "pattern": UPLOADED_DATASET_PATTERN, "maxLength": ID_MAX_LENGTH},
    ],
}
ITEMS_SCHEMA = {"minItems": 1, "maxItems": MAX_ITEMS}


class ErrorDetail(BaseModel):
    type: str
    code: str
    message: str
    param: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


MAX_METADATA_PAIRS = 16
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f\[\]]*$")]
MetadataValue = Annotated[str, StringConstraints(max_length=512, pattern=r"^[^\x00]*$")]


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    algorithm: str = Field(examples=["maml"], json_schema_extra=ALGORITHM_SCHEMA)
    dataset: str = Field(
        examples=["sinusoid"], json_schema_extra=DATASET_SCHEMA,
        description="a built-in dataset's name, or an uploaded dataset's id (ds_...)",
    )
    config: dict[str, Any] = Field(
        default_factory=dict, examples=[{"steps": 1000}],
        description="training and learner settings (GET a job to see them all, defaults filled in); each is "
                    "checked against its range, the algorithm and the dataset (422 invalid_config)",
    )
    name: str | None = Field(default=None, min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$",
                             description="a name of yours to find the job by (`GET /v1/jobs?name=`)")
    metadata: dict[MetadataKey, MetadataValue] = Field(
        default_factory=dict, max_length=MAX_METADATA_PAIRS,
        description=f"up to {MAX_METADATA_PAIRS} string pairs of yours (keys up to 64 characters, values up to 512); "
                    "`GET /v1/jobs?metadata[key]=value` lists the jobs that have them",
    )


class JobProgress(BaseModel):
    step: int
    total_steps: int
    metrics: dict[str, Any]


class JobPublic(BaseModel):
    object: Literal["job"] = "job"
    id: str
    algorithm: str
    dataset: str
    config: dict[str, Any]
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: JobProgress
    model_id: str | None
    error: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    name: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class JobsPublic(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobPublic]
    has_more: bool


class SplitPublic(BaseModel):
    count: int = Field(description="how many classes (or dataset tasks) the split holds")
    names: list[str] = Field(
        description=f"their names in the dataset's order (Omniglot `Alphabet/characterNN`, a zip's folder names, an npz's "
                    f"label values, MNIST digits, `task_<i>`); the first {MAX_LISTED_NAMES} when count is larger"
    )


class ModelSplitsPublic(BaseModel):
    kind: Literal["classes", "tasks"] = Field(description="what was split: the dataset's classes, or its tasks")
    train: SplitPublic = Field(description="meta-train: what the model was trained on")
    val: SplitPublic = Field(description="meta-val: held out from training (empty when val_fraction is 0)")
    test: SplitPublic = Field(description="meta-test: held out, the final metrics' tasks (empty when test_fraction is 0)")


class ModelPublic(BaseModel):
    object: Literal["model"] = "model"
    id: str
    job_id: str
    algorithm: str
    dataset: str
    input_shape: list[int]
    output: Literal["classification", "regression"]
    ways: int | None
    max_classes: int | None = Field(
        default=None, description="the most classes a task may have (classification): `ways` for the MAML family and "
                                  "black-box learners, which adapt only at the way they trained; more for ProtoNet and fine-tuning",
    )
    output_dim: int | None
    accepts_images: bool
    modality: Literal["image", "vector"] = Field(description="what an input is: an image or a vector of numbers")
    modality_params: dict[str, Any] = Field(
        description="image: channels (1 greyscale, 3 colour), size (square side in pixels), invert; "
                    "vector: features, standardized (whether raw inputs are standardised with training statistics)"
    )
    config: dict[str, Any]
    metrics: dict[str, Any]
    training_tasks: dict[str, str] = Field(
        default_factory=dict, description="a multi-task model's training tasks, name -> task id: ready for predictions"
    )
    splits: ModelSplitsPublic | None = Field(
        default=None,
        description="which classes (or dataset tasks) went to meta-train, meta-val and meta-test; null for datasets "
                    "that draw new tasks for every split (sinusoid, mtl-synthetic, MNIST digit groups) and for "
                    "models trained before splits were recorded",
    )
    created_at: datetime


class SupportSet(BaseModel):
    inputs: list[Any] = Field(
        description="nested lists of numbers in the model's input shape, or base64 PNG/JPEG", json_schema_extra=ITEMS_SCHEMA
    )
    labels: list[Any] = Field(
        description="class labels (strings or integers) or regression targets, one per input", json_schema_extra=ITEMS_SCHEMA
    )


class AdaptationOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inner_steps: int | None = Field(default=None, ge=0, le=MAX_ADAPT_STEPS)
    inner_lr: float | None = Field(default=None, gt=0, le=MAX_INNER_LR)
    test_time_augmentation: int | None = Field(
        default=None, ge=0, le=MAX_TTA_VIEWS,
        description="ProtoNet and fine-tuning on images: average each image's embedding over this many fixed affine views (0: off)",
    )
    feature_normalization: bool | None = Field(
        default=None, description="ProtoNet and fine-tuning: centre features on the support set's mean and scale them to unit length (SimpleShot)",
    )


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    support: SupportSet
    options: AdaptationOptions = Field(default_factory=AdaptationOptions)
    wait: bool = Field(default=True, description="wait for the adaptation (201) or answer at once (202)")


class TaskPublic(BaseModel):
    object: Literal["task"] = "task"
    id: str
    model_id: str
    status: Literal["adapting", "ready", "failed"]
    labels: list[Any] | None
    support_size: int
    options: dict[str, Any]
    error: str | None
    created_at: datetime
    ready_at: datetime | None
    conversions: list[str] = Field(
        default_factory=list, description="support inputs converted to the model's modality (e.g. a colour image "
                                          "given to a greyscale model), in the response that created the task")


class TasksPublic(BaseModel):
    object: Literal["list"] = "list"
    data: list[TaskPublic]
    has_more: bool


class PredictionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[Any] = Field(json_schema_extra=ITEMS_SCHEMA)


class PredictionsPublic(BaseModel):
    object: Literal["predictions"] = "predictions"
    task_id: str
    predictions: list[Any]
    probabilities: list[list[float]] | None = None
    labels: list[Any] | None = None
    conversions: list[str] = Field(
        default_factory=list, description="inputs converted to the model's modality (e.g. a colour image given to a greyscale model)")


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


class ModelsPublic(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelPublic]
    has_more: bool


class DatasetPublic(BaseModel):
    object: Literal["dataset"] = "dataset"
    id: str = Field(description="a built-in's name (sinusoid, omniglot, ...) or an uploaded dataset's ds_ id")
    name: str
    builtin: bool
    format: Literal["builtin", "npz", "images", "csv"]
    output: Literal["classification", "regression"]
    input_shape: list[int] | None
    modality: Literal["image", "vector"] = Field(description="what an input is: an image or a vector of numbers")
    modality_params: dict[str, Any] | None = Field(
        description="image: channels, size, invert; vector: features (null when the job's config sets them)")
    description: str | None = None
    summary: dict[str, Any] = Field(default_factory=dict, description="examples, classes or tasks, per-group counts")
    size_bytes: int | None = None
    created_at: datetime | None = None


class DatasetsPublic(BaseModel):
    object: Literal["list"] = "list"
    data: list[DatasetPublic]
    has_more: bool


class JobEventPublic(BaseModel):
    object: Literal["job.event"] = "job.event"
    id: int = Field(description="increasing within a job; pass the last one seen as `after`")
    job_id: str
    type: Literal["status", "progress", "checkpoint", "warning"]
    data: dict[str, Any]
    created_at: datetime


class JobEventsPublic(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobEventPublic]
    has_more: bool


class CheckpointPublic(BaseModel):
    object: Literal["checkpoint"] = "checkpoint"
    id: str
    job_id: str
    step: int
    metrics: dict[str, Any]
    created_at: datetime


class CheckpointsPublic(BaseModel):
    object: Literal["list"] = "list"
    data: list[CheckpointPublic]
    has_more: bool
