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
        feature_normalization (bool | None | Unset): ProtoNet and fine-tuning: centre features on the support set's mean
            and scale them to unit length (SimpleShot)
        inner_lr (float | None | Unset):
        inner_steps (int | None | Unset):
        test_time_augmentation (int | None | Unset): ProtoNet and fine-tuning on images: average each image's embedding
            over this many fixed affine views (0: off)
    """

    feature_normalization: bool | None | Unset = UNSET
    inner_lr: float | None | Unset = UNSET
    inner_steps: int | None | Unset = UNSET
    test_time_augmentation: int | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        feature_normalization: bool | None | Unset
        if isinstance(self.feature_normalization, Unset):
            feature_normalization = UNSET
        else:
            feature_normalization = self.feature_normalization

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

        test_time_augmentation: int | None | Unset
        if isinstance(self.test_time_augmentation, Unset):
            test_time_augmentation = UNSET
        else:
            test_time_augmentation = self.test_time_augmentation

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if feature_normalization is not UNSET:
            field_dict["feature_normalization"] = feature_normalization
        if inner_lr is not UNSET:
            field_dict["inner_lr"] = inner_lr
        if inner_steps is not UNSET:
            field_dict["inner_steps"] = inner_steps
        if test_time_augmentation is not UNSET:
            field_dict["test_time_augmentation"] = test_time_augmentation

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)

        def _parse_feature_normalization(data: object) -> bool | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(bool | None | Unset, data)

        feature_normalization = _parse_feature_normalization(d.pop("feature_normalization", UNSET))

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

        def _parse_test_time_augmentation(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        test_time_augmentation = _parse_test_time_augmentation(d.pop("test_time_augmentation", UNSET))

        adaptation_options = cls(
            feature_normalization=feature_normalization,
            inner_lr=inner_lr,
            inner_steps=inner_steps,
            test_time_augmentation=test_time_augmentation,
        )

        return adaptation_options
