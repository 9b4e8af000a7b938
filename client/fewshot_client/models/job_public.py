from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.job_public_status import JobPublicStatus
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.job_progress import JobProgress
    from ..models.job_public_config import JobPublicConfig


T = TypeVar("T", bound="JobPublic")


@_attrs_define
class JobPublic:
    """
    Attributes:
        algorithm (str):
        attempts (int):
        config (JobPublicConfig):
        created_at (datetime.datetime):
        dataset (str):
        error (None | str):
        finished_at (datetime.datetime | None):
        id (str):
        model_id (None | str):
        progress (JobProgress):
        started_at (datetime.datetime | None):
        status (JobPublicStatus):
        object_ (Literal['job'] | Unset):  Default: 'job'.
    """

    algorithm: str
    attempts: int
    config: JobPublicConfig
    created_at: datetime.datetime
    dataset: str
    error: None | str
    finished_at: datetime.datetime | None
    id: str
    model_id: None | str
    progress: JobProgress
    started_at: datetime.datetime | None
    status: JobPublicStatus
    object_: Literal["job"] | Unset = "job"
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        algorithm = self.algorithm

        attempts = self.attempts

        config = self.config.to_dict()

        created_at = self.created_at.isoformat()

        dataset = self.dataset

        error: None | str
        error = self.error

        finished_at: None | str
        if isinstance(self.finished_at, datetime.datetime):
            finished_at = self.finished_at.isoformat()
        else:
            finished_at = self.finished_at

        id = self.id

        model_id: None | str
        model_id = self.model_id

        progress = self.progress.to_dict()

        started_at: None | str
        if isinstance(self.started_at, datetime.datetime):
            started_at = self.started_at.isoformat()
        else:
            started_at = self.started_at

        status = self.status.value

        object_ = self.object_

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "algorithm": algorithm,
                "attempts": attempts,
                "config": config,
                "created_at": created_at,
                "dataset": dataset,
                "error": error,
                "finished_at": finished_at,
                "id": id,
                "model_id": model_id,
                "progress": progress,
                "started_at": started_at,
                "status": status,
            }
        )
        if object_ is not UNSET:
            field_dict["object"] = object_

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.job_progress import JobProgress  # noqa: PLC0415
        from ..models.job_public_config import JobPublicConfig  # noqa: PLC0415

        d = dict(src_dict)
        algorithm = d.pop("algorithm")

        attempts = d.pop("attempts")

        config = JobPublicConfig.from_dict(d.pop("config"))

        created_at = datetime.datetime.fromisoformat(d.pop("created_at"))

        dataset = d.pop("dataset")

        def _parse_error(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        error = _parse_error(d.pop("error"))

        def _parse_finished_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                finished_at_type_0 = datetime.datetime.fromisoformat(data)

                return finished_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        finished_at = _parse_finished_at(d.pop("finished_at"))

        id = d.pop("id")

        def _parse_model_id(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        model_id = _parse_model_id(d.pop("model_id"))

        progress = JobProgress.from_dict(d.pop("progress"))

        def _parse_started_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                started_at_type_0 = datetime.datetime.fromisoformat(data)

                return started_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        started_at = _parse_started_at(d.pop("started_at"))

        status = JobPublicStatus(d.pop("status"))

        object_ = cast(Literal["job"] | Unset, d.pop("object", UNSET))
        if object_ != "job" and not isinstance(object_, Unset):
            raise ValueError(f"object must match const 'job', got '{object_}'")

        job_public = cls(
            algorithm=algorithm,
            attempts=attempts,
            config=config,
            created_at=created_at,
            dataset=dataset,
            error=error,
            finished_at=finished_at,
            id=id,
            model_id=model_id,
            progress=progress,
            started_at=started_at,
            status=status,
            object_=object_,
        )

        job_public.additional_properties = d
        return job_public

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
