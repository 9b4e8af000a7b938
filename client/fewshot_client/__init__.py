"""The fewshot SDK: `Fewshot().jobs.create(...).wait()`, typed objects, typed errors, retries, paging.

Hand-written (nothing in this package is generated): openapi.json is the API's schema.
"""

from fewshot_client._client import Datasets, Fewshot, Jobs, Models, Tasks
from fewshot_client._errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ConflictError,
    FewshotError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
    WaitTimeout,
)
from fewshot_client._http import DEFAULT_URL
from fewshot_client._inputs import Inputs, encode_inputs
from fewshot_client._objects import (
    Checkpoint,
    Dataset,
    Job,
    JobEvent,
    JobProgress,
    JobStatus,
    Model,
    Prediction,
    Predictions,
    Task,
    TaskStatus,
)
from fewshot_client._paging import Page

__all__ = [
    "DEFAULT_URL", "APIConnectionError", "APIError", "AuthenticationError", "Checkpoint", "ConflictError", "Dataset", "Datasets",
    "Fewshot", "FewshotError", "InvalidRequestError", "Inputs", "Job", "JobEvent", "JobProgress", "JobStatus", "Jobs",
    "Model", "Models", "NotFoundError", "Page", "Prediction", "Predictions", "RateLimitError",
    "ServiceUnavailableError", "Task", "TaskStatus", "Tasks", "WaitTimeout", "encode_inputs",
]
