from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define

from ..models.job_create_algorithm import JobCreateAlgorithm
from ..models.job_create_dataset_type_0 import JobCreateDatasetType0
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.job_create_config import JobCreateConfig


T = TypeVar("T", bound="JobCreate")


@_attrs_define
class JobCreate:
    """
    Attributes:
        algorithm (JobCreateAlgorithm):
        dataset (JobCreateDatasetType0 | str): a built-in dataset's name, or an uploaded dataset's id (ds_...)
        config (JobCreateConfig | Unset): training and learner settings (GET a job to see them all, defaults filled in);
            each is checked against its range, the algorithm and the dataset (422 invalid_config)
    """

    algorithm: JobCreateAlgorithm
    dataset: JobCreateDatasetType0 | str
    config: JobCreateConfig | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        algorithm = self.algorithm.value

        dataset: str
        if isinstance(self.dataset, JobCreateDatasetType0):
            dataset = self.dataset.value
        else:
            dataset = self.dataset

        config: dict[str, Any] | Unset = UNSET
        if not isinstance(self.config, Unset):
            config = self.config.to_dict()

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "algorithm": algorithm,
                "dataset": dataset,
            }
        )
        if config is not UNSET:
            field_dict["config"] = config

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.job_create_config import JobCreateConfig  # noqa: PLC0415

        d = dict(src_dict)
        algorithm = JobCreateAlgorithm(d.pop("algorithm"))

        def _parse_dataset(data: object) -> JobCreateDatasetType0 | str:
            try:
                if not isinstance(data, str):
                    raise TypeError()
                dataset_type_0 = JobCreateDatasetType0(data)

                return dataset_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(JobCreateDatasetType0 | str, data)

        dataset = _parse_dataset(d.pop("dataset"))

        _config = d.pop("config", UNSET)
        config: JobCreateConfig | Unset
        if isinstance(_config, Unset):
            config = UNSET
        else:
            config = JobCreateConfig.from_dict(_config)

        job_create = cls(
            algorithm=algorithm,
            dataset=dataset,
            config=config,
        )

        return job_create
