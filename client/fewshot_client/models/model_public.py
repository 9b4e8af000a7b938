from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.model_public_modality import ModelPublicModality
from ..models.model_public_output import ModelPublicOutput
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.model_public_config import ModelPublicConfig
    from ..models.model_public_metrics import ModelPublicMetrics
    from ..models.model_public_modality_params import ModelPublicModalityParams
    from ..models.model_public_training_tasks import ModelPublicTrainingTasks
    from ..models.model_splits_public import ModelSplitsPublic


T = TypeVar("T", bound="ModelPublic")


@_attrs_define
class ModelPublic:
    """
    Attributes:
        accepts_images (bool):
        algorithm (str):
        config (ModelPublicConfig):
        created_at (datetime.datetime):
        dataset (str):
        id (str):
        input_shape (list[int]):
        job_id (str):
        metrics (ModelPublicMetrics):
        modality (ModelPublicModality): what an input is: an image or a vector of numbers
        modality_params (ModelPublicModalityParams): image: channels (1 greyscale, 3 colour), size (square side in
            pixels), invert; vector: features, standardized (whether raw inputs are standardised with training statistics)
        output (ModelPublicOutput):
        output_dim (int | None):
        ways (int | None):
        max_classes (int | None | Unset): the most classes a task may have (classification): `ways` for the MAML family
            and black-box learners, which adapt only at the way they trained; more for ProtoNet and fine-tuning
        object_ (Literal['model'] | Unset):  Default: 'model'.
        splits (ModelSplitsPublic | None | Unset): which classes (or dataset tasks) went to meta-train, meta-val and
            meta-test; null for datasets that draw new tasks for every split (sinusoid, mtl-synthetic, MNIST digit groups)
            and for models trained before splits were recorded
        training_tasks (ModelPublicTrainingTasks | Unset): a multi-task model's training tasks, name -> task id: ready
            for predictions
    """

    accepts_images: bool
    algorithm: str
    config: ModelPublicConfig
    created_at: datetime.datetime
    dataset: str
    id: str
    input_shape: list[int]
    job_id: str
    metrics: ModelPublicMetrics
    modality: ModelPublicModality
    modality_params: ModelPublicModalityParams
    output: ModelPublicOutput
    output_dim: int | None
    ways: int | None
    max_classes: int | None | Unset = UNSET
    object_: Literal["model"] | Unset = "model"
    splits: ModelSplitsPublic | None | Unset = UNSET
    training_tasks: ModelPublicTrainingTasks | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.model_splits_public import ModelSplitsPublic  # noqa: PLC0415

        accepts_images = self.accepts_images

        algorithm = self.algorithm

        config = self.config.to_dict()

        created_at = self.created_at.isoformat()

        dataset = self.dataset

        id = self.id

        input_shape = self.input_shape

        job_id = self.job_id

        metrics = self.metrics.to_dict()

        modality = self.modality.value

        modality_params = self.modality_params.to_dict()

        output = self.output.value

        output_dim: int | None
        output_dim = self.output_dim

        ways: int | None
        ways = self.ways

        max_classes: int | None | Unset
        if isinstance(self.max_classes, Unset):
            max_classes = UNSET
        else:
            max_classes = self.max_classes

        object_ = self.object_

        splits: dict[str, Any] | None | Unset
        if isinstance(self.splits, Unset):
            splits = UNSET
        elif isinstance(self.splits, ModelSplitsPublic):
            splits = self.splits.to_dict()
        else:
            splits = self.splits

        training_tasks: dict[str, Any] | Unset = UNSET
        if not isinstance(self.training_tasks, Unset):
            training_tasks = self.training_tasks.to_dict()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "accepts_images": accepts_images,
                "algorithm": algorithm,
                "config": config,
                "created_at": created_at,
                "dataset": dataset,
                "id": id,
                "input_shape": input_shape,
                "job_id": job_id,
                "metrics": metrics,
                "modality": modality,
                "modality_params": modality_params,
                "output": output,
                "output_dim": output_dim,
                "ways": ways,
            }
        )
        if max_classes is not UNSET:
            field_dict["max_classes"] = max_classes
        if object_ is not UNSET:
            field_dict["object"] = object_
        if splits is not UNSET:
            field_dict["splits"] = splits
        if training_tasks is not UNSET:
            field_dict["training_tasks"] = training_tasks

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.model_public_config import ModelPublicConfig  # noqa: PLC0415
        from ..models.model_public_metrics import ModelPublicMetrics  # noqa: PLC0415
        from ..models.model_public_modality_params import ModelPublicModalityParams  # noqa: PLC0415
        from ..models.model_public_training_tasks import ModelPublicTrainingTasks  # noqa: PLC0415
        from ..models.model_splits_public import ModelSplitsPublic  # noqa: PLC0415

        d = dict(src_dict)
        accepts_images = d.pop("accepts_images")

        algorithm = d.pop("algorithm")

        config = ModelPublicConfig.from_dict(d.pop("config"))

        created_at = datetime.datetime.fromisoformat(d.pop("created_at"))

        dataset = d.pop("dataset")

        id = d.pop("id")

        input_shape = cast(list[int], d.pop("input_shape"))

        job_id = d.pop("job_id")

        metrics = ModelPublicMetrics.from_dict(d.pop("metrics"))

        modality = ModelPublicModality(d.pop("modality"))

        modality_params = ModelPublicModalityParams.from_dict(d.pop("modality_params"))

        output = ModelPublicOutput(d.pop("output"))

        def _parse_output_dim(data: object) -> int | None:
            if data is None:
                return data
            return cast(int | None, data)

        output_dim = _parse_output_dim(d.pop("output_dim"))

        def _parse_ways(data: object) -> int | None:
            if data is None:
                return data
            return cast(int | None, data)

        ways = _parse_ways(d.pop("ways"))

        def _parse_max_classes(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        max_classes = _parse_max_classes(d.pop("max_classes", UNSET))

        object_ = cast(Literal["model"] | Unset, d.pop("object", UNSET))
        if object_ != "model" and not isinstance(object_, Unset):
            raise ValueError(f"object must match const 'model', got '{object_}'")

        def _parse_splits(data: object) -> ModelSplitsPublic | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                splits_type_0 = ModelSplitsPublic.from_dict(data)

                return splits_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(ModelSplitsPublic | None | Unset, data)

        splits = _parse_splits(d.pop("splits", UNSET))

        _training_tasks = d.pop("training_tasks", UNSET)
        training_tasks: ModelPublicTrainingTasks | Unset
        if isinstance(_training_tasks, Unset):
            training_tasks = UNSET
        else:
            training_tasks = ModelPublicTrainingTasks.from_dict(_training_tasks)

        model_public = cls(
            accepts_images=accepts_images,
            algorithm=algorithm,
            config=config,
            created_at=created_at,
            dataset=dataset,
            id=id,
            input_shape=input_shape,
            job_id=job_id,
            metrics=metrics,
            modality=modality,
            modality_params=modality_params,
            output=output,
            output_dim=output_dim,
            ways=ways,
            max_classes=max_classes,
            object_=object_,
            splits=splits,
            training_tasks=training_tasks,
        )

        model_public.additional_properties = d
        return model_public

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
