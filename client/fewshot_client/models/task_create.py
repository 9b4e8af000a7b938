from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.adaptation_options import AdaptationOptions
    from ..models.support_set import SupportSet


T = TypeVar("T", bound="TaskCreate")


@_attrs_define
class TaskCreate:
    """
    Attributes:
        support (SupportSet):
        options (AdaptationOptions | Unset):
        wait (bool | Unset): wait for the adaptation (201) or answer at once (202) Default: True.
    """

    support: SupportSet
    options: AdaptationOptions | Unset = UNSET
    wait: bool | Unset = True

    def to_dict(self) -> dict[str, Any]:
        support = self.support.to_dict()

        options: dict[str, Any] | Unset = UNSET
        if not isinstance(self.options, Unset):
            options = self.options.to_dict()

        wait = self.wait

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "support": support,
            }
        )
        if options is not UNSET:
            field_dict["options"] = options
        if wait is not UNSET:
            field_dict["wait"] = wait

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.adaptation_options import AdaptationOptions  # noqa: PLC0415
        from ..models.support_set import SupportSet  # noqa: PLC0415

        d = dict(src_dict)
        support = SupportSet.from_dict(d.pop("support"))

        _options = d.pop("options", UNSET)
        options: AdaptationOptions | Unset
        if isinstance(_options, Unset):
            options = UNSET
        else:
            options = AdaptationOptions.from_dict(_options)

        wait = d.pop("wait", UNSET)

        task_create = cls(
            support=support,
            options=options,
            wait=wait,
        )

        return task_create
