"""Datasets: the built-ins, and uploads (npz arrays, a CSV table or a zip of class folders of images)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.arrays import ArrayData, DatasetError, read_csv, read_image_zip, read_npz
from models.datasets import BUILTIN_DATASETS
from models.modality import legacy_modality, modality_from_json
from service.deps import ArtifactsDep, IdempotencyDep, SessionDep, SettingsDep, TenantDep
from service.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from service.routes.common import BODY_ERRORS, Cursor, ObjectId, errors
from service.schemas import DatasetPublic, DatasetsPublic
from store.artifacts import dataset_key
from store.db import Dataset, Job
from store.ids import new_id

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

NAME_PATTERN = r"^[^\x00-\x1f\x7f]*$"  # printable: no control characters (PostgreSQL refuses NUL)
BUILTINS: dict[str, DatasetPublic] = {
    d.name: DatasetPublic(
        id=d.name, name=d.name, builtin=True, format="builtin", output=d.output, description=d.description,
        input_shape=None if d.modality is None else list(d.modality.input_shape), **d.public(),
    )
    for d in BUILTIN_DATASETS.values()
}


def dataset_public(ds: Dataset) -> DatasetPublic:
    stored = ds.spec.get("modality")  # rows written before modalities: derived from the shape and image format
    modality = modality_from_json(stored) if stored else legacy_modality(ds.spec["input_shape"], ds.spec.get("image"))
    return DatasetPublic(
        id=ds.id, name=ds.name, builtin=False, format=ds.format, output=ds.output,  # type: ignore[arg-type]
        input_shape=list(ds.spec["input_shape"]), summary=ds.summary, size_bytes=ds.size_bytes, created_at=ds.created_at,
        **modality.public(),
    )


def get_dataset_or_404(session: Session, dataset_id: str, tenant: str) -> Dataset:
    ds = session.get(Dataset, dataset_id)
    if ds is None or ds.tenant_id != tenant:
        raise NotFound("dataset", dataset_id, param="dataset_id")
    return ds


@dataclass(frozen=True)
class UploadOptions:
    """The form fields that say how to read an upload."""

    image_size: int
    invert: bool
    channels: int | None
    label_column: str


def _parse(content: bytes, filename: str, options: UploadOptions, max_image_pixels: int) -> tuple[str, ArrayData]:
    """npz when the archive holds .npy arrays (or is named .npz), CSV when named .csv, else a zip of class folders."""
    is_npz = filename.lower().endswith(".npz") or (content[:2] == b"PK" and b".npy" in content[:4096])
    try:
        if is_npz:
            return "npz", read_npz(content)
        if filename.lower().endswith(".csv"):
            return "csv", read_csv(content, options.label_column)
        return "images", read_image_zip(content, options.image_size, options.invert, options.channels, max_image_pixels)
    except DatasetError as exc:
        raise InvalidInput(str(exc), param="file", code="invalid_dataset") from None


@router.post("", status_code=201, operation_id="create_dataset", response_model=DatasetPublic,
             responses=errors(*BODY_ERRORS, 404, 409))
def create_dataset(
    file: Annotated[UploadFile, File(description="an .npz (x, y, optional task), a .csv (header row, numeric features, "
                                                 "a label column, optional task column) or a .zip of class folders of images")],
    session: SessionDep, store: ArtifactsDep, settings: SettingsDep, tenant: TenantDep, idem: IdempotencyDep,
    name: Annotated[str | None, Form(max_length=255, pattern=NAME_PATTERN, description="defaults to the file name")] = None,
    image_size: Annotated[int, Form(ge=8, le=256, description="images are resized to this square size")] = 28,
    invert: Annotated[bool, Form(description="images: invert grey levels (dark strokes on white become 1)")] = False,
    channels: Annotated[int | None, Form(
        description="images: 1 (greyscale) or 3 (colour); default: 1 when every image is greyscale, else 3")] = None,
    label_column: Annotated[str, Form(min_length=1, max_length=255, description="csv: the column of labels")] = "label",
) -> DatasetPublic:
    content = file.file.read(settings.max_upload_bytes + 1)
    if len(content) > settings.max_upload_bytes:
        raise PayloadTooLarge(f"the upload exceeds {settings.max_upload_bytes} bytes", param="file")
    filename = re.sub(r"[\x00-\x1f\x7f]", "", file.filename or "") or "upload"  # stored as the default name
    label = (name or filename)[:255]
    if channels not in (None, 1, 3):
        raise InvalidInput(f"channels must be 1 (greyscale) or 3 (colour), got {channels}", param="channels", code="invalid_channels")
    options = UploadOptions(image_size, invert, channels, label_column)
    existing = idem.begin(
        lambda: hashlib.sha256(content).hexdigest() + f"|{label}|{image_size}|{invert}|{channels}|{label_column}"
    )
    if existing is not None:
        return dataset_public(get_dataset_or_404(session, existing, tenant))
    try:
        kind, data = _parse(content, filename, options, settings.max_image_pixels)
        dataset_id = new_id("ds")
        size = store.save(dataset_key(dataset_id), data.tensors(), metadata=data.metadata())
        spec: dict[str, Any] = {"input_shape": data.input_shape, "counts": data.counts(), "modality": data.modality.to_json()}
        ds = Dataset(id=dataset_id, tenant_id=tenant, name=label, format=kind, output=data.output, spec=spec,
                     summary=data.summary(), artifact=dataset_key(dataset_id), size_bytes=size)
        session.add(ds)
        try:
            idem.record(dataset_id)  # in the dataset's transaction: both or neither
            session.commit()
        except BaseException:
            store.delete_prefix(f"datasets/{dataset_id}")
            raise
    except BaseException:
        idem.abandon()
        raise
    return dataset_public(ds)


@router.get("", operation_id="list_datasets", response_model=DatasetsPublic, responses=errors())
def list_datasets(
    session: SessionDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Cursor = None,
) -> DatasetsPublic:
    """Uploaded datasets (newest first), then the built-ins."""
    page: list[DatasetPublic] = []
    builtins = list(BUILTINS)
    if after is None or after not in BUILTINS:
        query = select(Dataset).where(Dataset.tenant_id == tenant).order_by(Dataset.id.desc()).limit(limit + 1)
        if after is not None:
            query = query.where(Dataset.id < after)
        page = [dataset_public(d) for d in session.scalars(query)]
    else:
        builtins = builtins[builtins.index(after) + 1 :]
    page += [BUILTINS[b] for b in builtins]
    return DatasetsPublic(data=page[:limit], has_more=len(page) > limit)


@router.get("/{dataset_id}", operation_id="get_dataset", response_model=DatasetPublic, responses=errors(404))
def get_dataset(dataset_id: ObjectId, session: SessionDep, tenant: TenantDep) -> DatasetPublic:
    if dataset_id in BUILTINS:
        return BUILTINS[dataset_id]
    return dataset_public(get_dataset_or_404(session, dataset_id, tenant))


@router.delete("/{dataset_id}", status_code=204, operation_id="delete_dataset", responses=errors(404, 409))
def delete_dataset(dataset_id: ObjectId, session: SessionDep, store: ArtifactsDep, tenant: TenantDep) -> Response:
    if dataset_id in BUILTINS:
        raise Conflict(f"{dataset_id!r} is a built-in dataset and cannot be deleted", param="dataset_id", code="builtin_dataset")
    ds = get_dataset_or_404(session, dataset_id, tenant)
    busy = session.scalar(select(Job.id).where(Job.dataset == dataset_id, Job.status.in_(("queued", "running"))).limit(1))
    if busy is not None:
        raise Conflict(f"job {busy} is training on dataset {dataset_id}; cancel it or wait for it to finish",
                       param="dataset_id", code="dataset_in_use")
    session.delete(ds)
    session.commit()
    store.delete_prefix(f"datasets/{dataset_id}")
    return Response(status_code=204)
