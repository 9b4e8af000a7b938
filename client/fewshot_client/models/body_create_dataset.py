from __future__ import annotations

from collections.abc import Mapping
from io import BytesIO
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from .. import types
from ..types import UNSET, File, Unset

T = TypeVar("T", bound="BodyCreateDataset")


@_attrs_define
class BodyCreateDataset:
    """
    Attributes:
        file (File): an .npz (x, y, optional task), a .csv (header row, numeric features, a label column, optional task
            column) or a .zip of class folders of images
        channels (int | None | Unset): images: 1 (greyscale) or 3 (colour); default: 1 when every image is greyscale,
            else 3
        image_size (int | Unset): images are resized to this square size Default: 28.
        invert (bool | Unset): images: invert grey levels (dark strokes on white become 1) Default: False.
        label_column (str | Unset): csv: the column of labels Default: 'label'.
        name (None | str | Unset): defaults to the file name
    """

    file: File
    channels: int | None | Unset = UNSET
    image_size: int | Unset = 28
    invert: bool | Unset = False
    label_column: str | Unset = "label"
    name: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        file = self.file.to_tuple()

        channels: int | None | Unset
        if isinstance(self.channels, Unset):
            channels = UNSET
        else:
            channels = self.channels

        image_size = self.image_size

        invert = self.invert

        label_column = self.label_column

        name: None | str | Unset
        if isinstance(self.name, Unset):
            name = UNSET
        else:
            name = self.name

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "file": file,
            }
        )
        if channels is not UNSET:
            field_dict["channels"] = channels
        if image_size is not UNSET:
            field_dict["image_size"] = image_size
        if invert is not UNSET:
            field_dict["invert"] = invert
        if label_column is not UNSET:
            field_dict["label_column"] = label_column
        if name is not UNSET:
            field_dict["name"] = name

        return field_dict

    def to_multipart(self) -> types.RequestFiles:
        files: types.RequestFiles = []

        files.append(("file", self.file.to_tuple()))

        if not isinstance(self.channels, Unset):
            if isinstance(self.channels, int):
                files.append(("channels", (None, str(self.channels).encode(), "text/plain")))
            else:
                files.append(("channels", (None, str(self.channels).encode(), "text/plain")))

        if not isinstance(self.image_size, Unset):
            files.append(("image_size", (None, str(self.image_size).encode(), "text/plain")))

        if not isinstance(self.invert, Unset):
            files.append(("invert", (None, str(self.invert).encode(), "text/plain")))

        if not isinstance(self.label_column, Unset):
            files.append(("label_column", (None, str(self.label_column).encode(), "text/plain")))

        if not isinstance(self.name, Unset):
            if isinstance(self.name, str):
                files.append(("name", (None, str(self.name).encode(), "text/plain")))
            else:
                files.append(("name", (None, str(self.name).encode(), "text/plain")))

        for prop_name, prop in self.additional_properties.items():
            files.append((prop_name, (None, str(prop).encode(), "text/plain")))

        return files

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        file = File(payload=BytesIO(d.pop("file")))

        def _parse_channels(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        channels = _parse_channels(d.pop("channels", UNSET))

        image_size = d.pop("image_size", UNSET)

        invert = d.pop("invert", UNSET)

        label_column = d.pop("label_column", UNSET)

        def _parse_name(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        name = _parse_name(d.pop("name", UNSET))

        body_create_dataset = cls(
            file=file,
            channels=channels,
            image_size=image_size,
            invert=invert,
            label_column=label_column,
            name=name,
        )

        body_create_dataset.additional_properties = d
        return body_create_dataset

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
