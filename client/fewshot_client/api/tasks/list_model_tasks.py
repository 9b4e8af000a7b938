from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_body import ErrorBody
from ...models.tasks_public import TasksPublic
from ...types import UNSET, Response, Unset


def _get_kwargs(
    model_id: str,
    *,
    limit: int | Unset = 20,
    after: None | str | Unset = UNSET,
) -> dict[str, Any]:

    params: dict[str, Any] = {}

    params["limit"] = limit

    json_after: None | str | Unset
    if isinstance(after, Unset):
        json_after = UNSET
    else:
        json_after = after
    params["after"] = json_after

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/v1/models/{model_id}/tasks".format(
            model_id=quote(str(model_id), safe=""),
        ),
        "params": params,
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorBody | TasksPublic | None:
    if response.status_code == 200:
        response_200 = TasksPublic.from_dict(response.json())

        return response_200

    if response.status_code == 401:
        response_401 = ErrorBody.from_dict(response.json())

        return response_401

    if response.status_code == 404:
        response_404 = ErrorBody.from_dict(response.json())

        return response_404

    if response.status_code == 422:
        response_422 = ErrorBody.from_dict(response.json())

        return response_422

    if response.status_code == 429:
        response_429 = ErrorBody.from_dict(response.json())

        return response_429

    if response.status_code == 503:
        response_503 = ErrorBody.from_dict(response.json())

        return response_503

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[ErrorBody | TasksPublic]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    model_id: str,
    *,
    client: AuthenticatedClient | Client,
    limit: int | Unset = 20,
    after: None | str | Unset = UNSET,
) -> Response[ErrorBody | TasksPublic]:
    """List Model Tasks

     The model's tasks, newest first: every task a POST stored, whether or not its client got the answer.

    Args:
        model_id (str):
        limit (int | Unset):  Default: 20.
        after (None | str | Unset): the last id of the previous page

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorBody | TasksPublic]
    """

    kwargs = _get_kwargs(
        model_id=model_id,
        limit=limit,
        after=after,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    model_id: str,
    *,
    client: AuthenticatedClient | Client,
    limit: int | Unset = 20,
    after: None | str | Unset = UNSET,
) -> ErrorBody | TasksPublic | None:
    """List Model Tasks

     The model's tasks, newest first: every task a POST stored, whether or not its client got the answer.

    Args:
        model_id (str):
        limit (int | Unset):  Default: 20.
        after (None | str | Unset): the last id of the previous page

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorBody | TasksPublic
    """

    return sync_detailed(
        model_id=model_id,
        client=client,
        limit=limit,
        after=after,
    ).parsed


async def asyncio_detailed(
    model_id: str,
    *,
    client: AuthenticatedClient | Client,
    limit: int | Unset = 20,
    after: None | str | Unset = UNSET,
) -> Response[ErrorBody | TasksPublic]:
    """List Model Tasks

     The model's tasks, newest first: every task a POST stored, whether or not its client got the answer.

    Args:
        model_id (str):
        limit (int | Unset):  Default: 20.
        after (None | str | Unset): the last id of the previous page

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorBody | TasksPublic]
    """

    kwargs = _get_kwargs(
        model_id=model_id,
        limit=limit,
        after=after,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    model_id: str,
    *,
    client: AuthenticatedClient | Client,
    limit: int | Unset = 20,
    after: None | str | Unset = UNSET,
) -> ErrorBody | TasksPublic | None:
    """List Model Tasks

     The model's tasks, newest first: every task a POST stored, whether or not its client got the answer.

    Args:
        model_id (str):
        limit (int | Unset):  Default: 20.
        after (None | str | Unset): the last id of the previous page

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorBody | TasksPublic
    """

    return (
        await asyncio_detailed(
            model_id=model_id,
            client=client,
            limit=limit,
            after=after,
        )
    ).parsed
