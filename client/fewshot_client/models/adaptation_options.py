from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define

from ..types import UNSET, Unset

T = TypeVar("T", bound="AdaptationOptions")


@_attrs_define
class AdaptationOptions:
    """
    Attributes:
        inner_lr (float | None | Unset):
        inner_steps (int | None | Unset):
    """

    inner_lr: float | None | Unset = UNSET
    inner_steps: int | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        inner_lr: float | None | Unset
        if isinstance(self.inner_lr, Unset):
            inner_lr = UNSET
        else:
            inner_lr = self.inner_lr

        inner_steps: int | None | Unset
        if isinstance(self.inner_steps, Unset):
            inner_steps = UNSET
        else:
            inner_steps = self.inner_steps

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if inner_lr is not UNSET:
            field_dict["inner_lr"] = inner_lr
        if inner_steps is not UNSET:
            field_dict["inner_steps"] = inner_steps

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)

        def _parse_inner_lr(data: object) -> float | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(float | None | Unset, data)

        inner_lr = _parse_inner_lr(d.pop("inner_lr", UNSET))

        def _parse_inner_steps(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        inner_steps = _parse_inner_steps(d.pop("inner_steps", UNSET))

        adaptation_options = cls(
            inner_lr=inner_lr,
            inner_steps=inner_steps,
        )

        return adaptation_options
