from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.model_splits_public_kind import ModelSplitsPublicKind

if TYPE_CHECKING:
    from ..models.split_public import SplitPublic


T = TypeVar("T", bound="ModelSplitsPublic")


@_attrs_define
class ModelSplitsPublic:
    """
    Attributes:
        kind (ModelSplitsPublicKind): what was split: the dataset's classes, or its tasks
        test (SplitPublic):
        train (SplitPublic):
        val (SplitPublic):
    """

    kind: ModelSplitsPublicKind
    test: SplitPublic
    train: SplitPublic
    val: SplitPublic
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        kind = self.kind.value

        test = self.test.to_dict()

        train = self.train.to_dict()

        val = self.val.to_dict()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "kind": kind,
                "test": test,
                "train": train,
                "val": val,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.split_public import SplitPublic  # noqa: PLC0415

        d = dict(src_dict)
        kind = ModelSplitsPublicKind(d.pop("kind"))

        test = SplitPublic.from_dict(d.pop("test"))

        train = SplitPublic.from_dict(d.pop("train"))

        val = SplitPublic.from_dict(d.pop("val"))

        model_splits_public = cls(
            kind=kind,
            test=test,
            train=train,
            val=val,
        )

        model_splits_public.additional_properties = d
        return model_splits_public

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
