from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define

T = TypeVar("T", bound="PredictionCreate")


@_attrs_define
class PredictionCreate:
    """
    Attributes:
        inputs (list[Any]):
    """

    inputs: list[Any]

    def to_dict(self) -> dict[str, Any]:
        inputs = self.inputs

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "inputs": inputs,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        inputs = cast(list[Any], d.pop("inputs"))

        prediction_create = cls(
            inputs=inputs,
        )

        return prediction_create
