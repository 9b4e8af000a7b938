from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="SupportSet")


@_attrs_define
class SupportSet:
    """
    Attributes:
        inputs (list[Any]): nested lists of numbers in the model's input shape, or base64 PNG/JPEG
        labels (list[Any]): class labels (strings or integers) or regression targets, one per input
    """

    inputs: list[Any]
    labels: list[Any]
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        inputs = self.inputs

        labels = self.labels

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "inputs": inputs,
                "labels": labels,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        inputs = cast(list[Any], d.pop("inputs"))

        labels = cast(list[Any], d.pop("labels"))

        support_set = cls(
            inputs=inputs,
            labels=labels,
        )

        support_set.additional_properties = d
        return support_set

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
