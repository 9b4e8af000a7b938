from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.checkpoints_public import CheckpointsPublic
from ...models.error_body import ErrorBody
from ...types import UNSET, Response, Unset


def _get_kwargs(
    job_id: str,
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
        "url": "/v1/jobs/{job_id}/checkpoints".format(
            job_id=quote(str(job_id), safe=""),
        ),
        "params": params,
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> CheckpointsPublic | ErrorBody | None:
    if response.status_code == 200:
        response_200 = CheckpointsPublic.from_dict(response.json())

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
) -> Response[CheckpointsPublic | ErrorBody]:
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
    limit: int | Unset = 20,
    after: None | str | Unset = UNSET,
) -> Response[CheckpointsPublic | ErrorBody]:
    """List Job Checkpoints

    Args:
        job_id (str):
        limit (int | Unset):  Default: 20.
        after (None | str | Unset): the last id of the previous page

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[CheckpointsPublic | ErrorBody]
    """

    kwargs = _get_kwargs(
        job_id=job_id,
        limit=limit,
        after=after,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    job_id: str,
    *,
    client: AuthenticatedClient | Client,
    limit: int | Unset = 20,
    after: None | str | Unset = UNSET,
) -> CheckpointsPublic | ErrorBody | None:
    """List Job Checkpoints

    Args:
        job_id (str):
        limit (int | Unset):  Default: 20.
        after (None | str | Unset): the last id of the previous page

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        CheckpointsPublic | ErrorBody
    """

    return sync_detailed(
        job_id=job_id,
        client=client,
        limit=limit,
        after=after,
    ).parsed


async def asyncio_detailed(
    job_id: str,
    *,
    client: AuthenticatedClient | Client,
    limit: int | Unset = 20,
    after: None | str | Unset = UNSET,
) -> Response[CheckpointsPublic | ErrorBody]:
    """List Job Checkpoints

    Args:
        job_id (str):
        limit (int | Unset):  Default: 20.
        after (None | str | Unset): the last id of the previous page

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[CheckpointsPublic | ErrorBody]
    """

    kwargs = _get_kwargs(
        job_id=job_id,
        limit=limit,
        after=after,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    job_id: str,
    *,
    client: AuthenticatedClient | Client,
    limit: int | Unset = 20,
    after: None | str | Unset = UNSET,
) -> CheckpointsPublic | ErrorBody | None:
    """List Job Checkpoints

    Args:
        job_id (str):
        limit (int | Unset):  Default: 20.
        after (None | str | Unset): the last id of the previous page

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        CheckpointsPublic | ErrorBody
    """

    return (
        await asyncio_detailed(
            job_id=job_id,
            client=client,
            limit=limit,
            after=after,
        )
    ).parsed
