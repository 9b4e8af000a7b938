from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_body import ErrorBody
from ...models.job_events_public import JobEventsPublic
from ...types import UNSET, Response, Unset


def _get_kwargs(
    job_id: str,
    *,
    after: int | Unset = 0,
    limit: int | Unset = 100,
    stream: bool | Unset = False,
) -> dict[str, Any]:

    params: dict[str, Any] = {}

    params["after"] = after

    params["limit"] = limit

    params["stream"] = stream

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/v1/jobs/{job_id}/events".format(
            job_id=quote(str(job_id), safe=""),
        ),
        "params": params,
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorBody | JobEventsPublic | None:
    if response.status_code == 200:
        response_200 = JobEventsPublic.from_dict(response.json())

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
) -> Response[ErrorBody | JobEventsPublic]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    job_id: str,
    *,
    client: AuthenticatedClient | Client,
    after: int | Unset = 0,
    limit: int | Unset = 100,
    stream: bool | Unset = False,
) -> Response[ErrorBody | JobEventsPublic]:
    """List Job Events

    Args:
        job_id (str):
        after (int | Unset): the last event id seen Default: 0.
        limit (int | Unset):  Default: 100.
        stream (bool | Unset): a Server-Sent Events stream instead of a JSON page Default: False.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorBody | JobEventsPublic]
    """

    kwargs = _get_kwargs(
        job_id=job_id,
        after=after,
        limit=limit,
        stream=stream,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    job_id: str,
    *,
    client: AuthenticatedClient | Client,
    after: int | Unset = 0,
    limit: int | Unset = 100,
    stream: bool | Unset = False,
) -> ErrorBody | JobEventsPublic | None:
    """List Job Events

    Args:
        job_id (str):
        after (int | Unset): the last event id seen Default: 0.
        limit (int | Unset):  Default: 100.
        stream (bool | Unset): a Server-Sent Events stream instead of a JSON page Default: False.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorBody | JobEventsPublic
    """

    return sync_detailed(
        job_id=job_id,
        client=client,
        after=after,
        limit=limit,
        stream=stream,
    ).parsed


async def asyncio_detailed(
    job_id: str,
    *,
    client: AuthenticatedClient | Client,
    after: int | Unset = 0,
    limit: int | Unset = 100,
    stream: bool | Unset = False,
) -> Response[ErrorBody | JobEventsPublic]:
    """List Job Events

    Args:
        job_id (str):
        after (int | Unset): the last event id seen Default: 0.
        limit (int | Unset):  Default: 100.
        stream (bool | Unset): a Server-Sent Events stream instead of a JSON page Default: False.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorBody | JobEventsPublic]
    """

    kwargs = _get_kwargs(
        job_id=job_id,
        after=after,
        limit=limit,
        stream=stream,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    job_id: str,
    *,
    client: AuthenticatedClient | Client,
    after: int | Unset = 0,
    limit: int | Unset = 100,
    stream: bool | Unset = False,
) -> ErrorBody | JobEventsPublic | None:
    """List Job Events

    Args:
        job_id (str):
        after (int | Unset): the last event id seen Default: 0.
        limit (int | Unset):  Default: 100.
        stream (bool | Unset): a Server-Sent Events stream instead of a JSON page Default: False.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorBody | JobEventsPublic
    """

    return (
        await asyncio_detailed(
            job_id=job_id,
            client=client,
            after=after,
            limit=limit,
            stream=stream,
        )
    ).parsed
