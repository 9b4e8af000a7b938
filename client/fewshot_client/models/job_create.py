from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.job_create_config import JobCreateConfig


T = TypeVar("T", bound="JobCreate")


@_attrs_define
class JobCreate:
    """
    Attributes:
        algorithm (str):
        dataset (str):
        config (JobCreateConfig | Unset):
    """

    algorithm: str
    dataset: str
    config: JobCreateConfig | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        algorithm = self.algorithm

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
        algorithm = d.pop("algorithm")

        dataset = d.pop("dataset")

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
