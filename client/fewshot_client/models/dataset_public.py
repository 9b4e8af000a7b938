from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.dataset_public_format import DatasetPublicFormat
from ..models.dataset_public_modality import DatasetPublicModality
from ..models.dataset_public_output import DatasetPublicOutput
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.dataset_public_modality_params_type_0 import DatasetPublicModalityParamsType0
    from ..models.dataset_public_summary import DatasetPublicSummary


T = TypeVar("T", bound="DatasetPublic")


@_attrs_define
class DatasetPublic:
    """
    Attributes:
        builtin (bool):
        format_ (DatasetPublicFormat):
        id (str): a built-in's name (sinusoid, omniglot, ...) or an uploaded dataset's ds_ id
        input_shape (list[int] | None):
        modality (DatasetPublicModality): what an input is: an image or a vector of numbers
        modality_params (DatasetPublicModalityParamsType0 | None): image: channels, size, invert; vector: features (null
            when the job's config sets them)
        name (str):
        output (DatasetPublicOutput):
        created_at (datetime.datetime | None | Unset):
        description (None | str | Unset):
        object_ (Literal['dataset'] | Unset):  Default: 'dataset'.
        size_bytes (int | None | Unset):
        summary (DatasetPublicSummary | Unset): examples, classes or tasks, per-group counts
    """

    builtin: bool
    format_: DatasetPublicFormat
    id: str
    input_shape: list[int] | None
    modality: DatasetPublicModality
    modality_params: DatasetPublicModalityParamsType0 | None
    name: str
    output: DatasetPublicOutput
    created_at: datetime.datetime | None | Unset = UNSET
    description: None | str | Unset = UNSET
    object_: Literal["dataset"] | Unset = "dataset"
    size_bytes: int | None | Unset = UNSET
    summary: DatasetPublicSummary | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.dataset_public_modality_params_type_0 import DatasetPublicModalityParamsType0  # noqa: PLC0415

        builtin = self.builtin

        format_ = self.format_.value

        id = self.id

        input_shape: list[int] | None
        if isinstance(self.input_shape, list):
            input_shape = self.input_shape

        else:
            input_shape = self.input_shape

        modality = self.modality.value

        modality_params: dict[str, Any] | None
        if isinstance(self.modality_params, DatasetPublicModalityParamsType0):
            modality_params = self.modality_params.to_dict()
        else:
            modality_params = self.modality_params

        name = self.name

        output = self.output.value

        created_at: None | str | Unset
        if isinstance(self.created_at, Unset):
            created_at = UNSET
        elif isinstance(self.created_at, datetime.datetime):
            created_at = self.created_at.isoformat()
        else:
            created_at = self.created_at

        description: None | str | Unset
        if isinstance(self.description, Unset):
            description = UNSET
        else:
            description = self.description

        object_ = self.object_

        size_bytes: int | None | Unset
        if isinstance(self.size_bytes, Unset):
            size_bytes = UNSET
        else:
            size_bytes = self.size_bytes

        summary: dict[str, Any] | Unset = UNSET
        if not isinstance(self.summary, Unset):
            summary = self.summary.to_dict()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "builtin": builtin,
                "format": format_,
                "id": id,
                "input_shape": input_shape,
                "modality": modality,
                "modality_params": modality_params,
                "name": name,
                "output": output,
            }
        )
        if created_at is not UNSET:
            field_dict["created_at"] = created_at
        if description is not UNSET:
            field_dict["description"] = description
        if object_ is not UNSET:
            field_dict["object"] = object_
        if size_bytes is not UNSET:
            field_dict["size_bytes"] = size_bytes
        if summary is not UNSET:
            field_dict["summary"] = summary

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.dataset_public_modality_params_type_0 import DatasetPublicModalityParamsType0  # noqa: PLC0415
        from ..models.dataset_public_summary import DatasetPublicSummary  # noqa: PLC0415

        d = dict(src_dict)
        builtin = d.pop("builtin")

        format_ = DatasetPublicFormat(d.pop("format"))

        id = d.pop("id")

        def _parse_input_shape(data: object) -> list[int] | None:
            if data is None:
                return data
            try:
                if not isinstance(data, list):
                    raise TypeError()
                input_shape_type_0 = cast(list[int], data)

                return input_shape_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(list[int] | None, data)

        input_shape = _parse_input_shape(d.pop("input_shape"))

        modality = DatasetPublicModality(d.pop("modality"))

        def _parse_modality_params(data: object) -> DatasetPublicModalityParamsType0 | None:
            if data is None:
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                modality_params_type_0 = DatasetPublicModalityParamsType0.from_dict(data)

                return modality_params_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(DatasetPublicModalityParamsType0 | None, data)

        modality_params = _parse_modality_params(d.pop("modality_params"))

        name = d.pop("name")

        output = DatasetPublicOutput(d.pop("output"))

        def _parse_created_at(data: object) -> datetime.datetime | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                created_at_type_0 = datetime.datetime.fromisoformat(data)

                return created_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None | Unset, data)

        created_at = _parse_created_at(d.pop("created_at", UNSET))

        def _parse_description(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        description = _parse_description(d.pop("description", UNSET))

        object_ = cast(Literal["dataset"] | Unset, d.pop("object", UNSET))
        if object_ != "dataset" and not isinstance(object_, Unset):
            raise ValueError(f"object must match const 'dataset', got '{object_}'")

        def _parse_size_bytes(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        size_bytes = _parse_size_bytes(d.pop("size_bytes", UNSET))

        _summary = d.pop("summary", UNSET)
        summary: DatasetPublicSummary | Unset
        if isinstance(_summary, Unset):
            summary = UNSET
        else:
            summary = DatasetPublicSummary.from_dict(_summary)

        dataset_public = cls(
            builtin=builtin,
            format_=format_,
            id=id,
            input_shape=input_shape,
            modality=modality,
            modality_params=modality_params,
            name=name,
            output=output,
            created_at=created_at,
            description=description,
            object_=object_,
            size_bytes=size_bytes,
            summary=summary,
        )

        dataset_public.additional_properties = d
        return dataset_public

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
