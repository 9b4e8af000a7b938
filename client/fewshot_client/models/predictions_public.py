from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

T = TypeVar("T", bound="PredictionsPublic")


@_attrs_define
class PredictionsPublic:
    """
    Attributes:
        predictions (list[Any]):
        task_id (str):
        conversions (list[str] | Unset): inputs converted to the model's modality (e.g. a colour image given to a
            greyscale model)
        labels (list[Any] | None | Unset):
        object_ (Literal['predictions'] | Unset):  Default: 'predictions'.
        probabilities (list[list[float]] | None | Unset):
    """

    predictions: list[Any]
    task_id: str
    conversions: list[str] | Unset = UNSET
    labels: list[Any] | None | Unset = UNSET
    object_: Literal["predictions"] | Unset = "predictions"
    probabilities: list[list[float]] | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        predictions = self.predictions

        task_id = self.task_id

        conversions: list[str] | Unset = UNSET
        if not isinstance(self.conversions, Unset):
            conversions = self.conversions

        labels: list[Any] | None | Unset
        if isinstance(self.labels, Unset):
            labels = UNSET
        elif isinstance(self.labels, list):
            labels = self.labels

        else:
            labels = self.labels

        object_ = self.object_

        probabilities: list[list[float]] | None | Unset
        if isinstance(self.probabilities, Unset):
            probabilities = UNSET
        elif isinstance(self.probabilities, list):
            probabilities = []
            for probabilities_type_0_item_data in self.probabilities:
                probabilities_type_0_item = probabilities_type_0_item_data

                probabilities.append(probabilities_type_0_item)

        else:
            probabilities = self.probabilities

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "predictions": predictions,
                "task_id": task_id,
            }
        )
        if conversions is not UNSET:
            field_dict["conversions"] = conversions
        if labels is not UNSET:
            field_dict["labels"] = labels
        if object_ is not UNSET:
            field_dict["object"] = object_
        if probabilities is not UNSET:
            field_dict["probabilities"] = probabilities

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        predictions = cast(list[Any], d.pop("predictions"))

        task_id = d.pop("task_id")

        conversions = cast(list[str], d.pop("conversions", UNSET))

        def _parse_labels(data: object) -> list[Any] | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, list):
                    raise TypeError()
                labels_type_0 = cast(list[Any], data)

                return labels_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(list[Any] | None | Unset, data)

        labels = _parse_labels(d.pop("labels", UNSET))

        object_ = cast(Literal["predictions"] | Unset, d.pop("object", UNSET))
        if object_ != "predictions" and not isinstance(object_, Unset):
            raise ValueError(f"object must match const 'predictions', got '{object_}'")

        def _parse_probabilities(data: object) -> list[list[float]] | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, list):
                    raise TypeError()
                probabilities_type_0 = []
                _probabilities_type_0 = data
                for probabilities_type_0_item_data in _probabilities_type_0:
                    probabilities_type_0_item = cast(list[float], probabilities_type_0_item_data)

                    probabilities_type_0.append(probabilities_type_0_item)

                return probabilities_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(list[list[float]] | None | Unset, data)

        probabilities = _parse_probabilities(d.pop("probabilities", UNSET))

        predictions_public = cls(
            predictions=predictions,
            task_id=task_id,
            conversions=conversions,
            labels=labels,
            object_=object_,
            probabilities=probabilities,
        )

        predictions_public.additional_properties = d
        return predictions_public

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
