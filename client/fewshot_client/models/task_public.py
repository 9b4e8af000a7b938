from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.task_public_status import TaskPublicStatus
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.task_public_options import TaskPublicOptions


T = TypeVar("T", bound="TaskPublic")


@_attrs_define
class TaskPublic:
    """
    Attributes:
        created_at (datetime.datetime):
        error (None | str):
        id (str):
        labels (list[Any] | None):
        model_id (str):
        options (TaskPublicOptions):
        ready_at (datetime.datetime | None):
        status (TaskPublicStatus):
        support_size (int):
        conversions (list[str] | Unset): support inputs converted to the model's modality (e.g. a colour image given to
            a greyscale model), in the response that created the task
        object_ (Literal['task'] | Unset):  Default: 'task'.
    """

    created_at: datetime.datetime
    error: None | str
    id: str
    labels: list[Any] | None
    model_id: str
    options: TaskPublicOptions
    ready_at: datetime.datetime | None
    status: TaskPublicStatus
    support_size: int
    conversions: list[str] | Unset = UNSET
    object_: Literal["task"] | Unset = "task"
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        created_at = self.created_at.isoformat()

        error: None | str
        error = self.error

        id = self.id

        labels: list[Any] | None
        if isinstance(self.labels, list):
            labels = self.labels

        else:
            labels = self.labels

        model_id = self.model_id

        options = self.options.to_dict()

        ready_at: None | str
        if isinstance(self.ready_at, datetime.datetime):
            ready_at = self.ready_at.isoformat()
        else:
            ready_at = self.ready_at

        status = self.status.value

        support_size = self.support_size

        conversions: list[str] | Unset = UNSET
        if not isinstance(self.conversions, Unset):
            conversions = self.conversions

        object_ = self.object_

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "created_at": created_at,
                "error": error,
                "id": id,
                "labels": labels,
                "model_id": model_id,
                "options": options,
                "ready_at": ready_at,
                "status": status,
                "support_size": support_size,
            }
        )
        if conversions is not UNSET:
            field_dict["conversions"] = conversions
        if object_ is not UNSET:
            field_dict["object"] = object_

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.task_public_options import TaskPublicOptions  # noqa: PLC0415

        d = dict(src_dict)
        created_at = datetime.datetime.fromisoformat(d.pop("created_at"))

        def _parse_error(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        error = _parse_error(d.pop("error"))

        id = d.pop("id")

        def _parse_labels(data: object) -> list[Any] | None:
            if data is None:
                return data
            try:
                if not isinstance(data, list):
                    raise TypeError()
                labels_type_0 = cast(list[Any], data)

                return labels_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(list[Any] | None, data)

        labels = _parse_labels(d.pop("labels"))

        model_id = d.pop("model_id")

        options = TaskPublicOptions.from_dict(d.pop("options"))

        def _parse_ready_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                ready_at_type_0 = datetime.datetime.fromisoformat(data)

                return ready_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        ready_at = _parse_ready_at(d.pop("ready_at"))

        status = TaskPublicStatus(d.pop("status"))

        support_size = d.pop("support_size")

        conversions = cast(list[str], d.pop("conversions", UNSET))

        object_ = cast(Literal["task"] | Unset, d.pop("object", UNSET))
        if object_ != "task" and not isinstance(object_, Unset):
            raise ValueError(f"object must match const 'task', got '{object_}'")

        task_public = cls(
            created_at=created_at,
            error=error,
            id=id,
            labels=labels,
            model_id=model_id,
            options=options,
            ready_at=ready_at,
            status=status,
            support_size=support_size,
            conversions=conversions,
            object_=object_,
        )

        task_public.additional_properties = d
        return task_public

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
