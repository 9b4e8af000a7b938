"""Contains all the data models used in inputs/outputs"""

from .adaptation_options import AdaptationOptions
from .body_create_dataset import BodyCreateDataset
from .checkpoint_public import CheckpointPublic
from .checkpoint_public_metrics import CheckpointPublicMetrics
from .checkpoints_public import CheckpointsPublic
from .dataset_public import DatasetPublic
from .dataset_public_format import DatasetPublicFormat
from .dataset_public_modality import DatasetPublicModality
from .dataset_public_modality_params_type_0 import DatasetPublicModalityParamsType0
from .dataset_public_output import DatasetPublicOutput
from .dataset_public_summary import DatasetPublicSummary
from .datasets_public import DatasetsPublic
from .error_body import ErrorBody
from .error_detail import ErrorDetail
from .health import Health
from .health_checks import HealthChecks
from .job_create import JobCreate
from .job_create_algorithm import JobCreateAlgorithm
from .job_create_config import JobCreateConfig
from .job_create_dataset_type_0 import JobCreateDatasetType0
from .job_event_public import JobEventPublic
from .job_event_public_data import JobEventPublicData
from .job_event_public_type import JobEventPublicType
from .job_events_public import JobEventsPublic
from .job_progress import JobProgress
from .job_progress_metrics import JobProgressMetrics
from .job_public import JobPublic
from .job_public_config import JobPublicConfig
from .job_public_status import JobPublicStatus
from .jobs_public import JobsPublic
from .list_jobs_status_type_0 import ListJobsStatusType0
from .model_public import ModelPublic
from .model_public_config import ModelPublicConfig
from .model_public_metrics import ModelPublicMetrics
from .model_public_modality import ModelPublicModality
from .model_public_modality_params import ModelPublicModalityParams
from .model_public_output import ModelPublicOutput
from .model_public_training_tasks import ModelPublicTrainingTasks
from .model_splits_public import ModelSplitsPublic
from .model_splits_public_kind import ModelSplitsPublicKind
from .models_public import ModelsPublic
from .prediction_create import PredictionCreate
from .predictions_public import PredictionsPublic
from .split_public import SplitPublic
from .support_set import SupportSet
from .task_create import TaskCreate
from .task_public import TaskPublic
from .task_public_options import TaskPublicOptions
from .task_public_status import TaskPublicStatus
from .tasks_public import TasksPublic

__all__ = (
    "AdaptationOptions",
    "BodyCreateDataset",
    "CheckpointPublic",
    "CheckpointPublicMetrics",
    "CheckpointsPublic",
    "DatasetPublic",
    "DatasetPublicFormat",
    "DatasetPublicModality",
    "DatasetPublicModalityParamsType0",
    "DatasetPublicOutput",
    "DatasetPublicSummary",
    "DatasetsPublic",
    "ErrorBody",
    "ErrorDetail",
    "Health",
    "HealthChecks",
    "JobCreate",
    "JobCreateAlgorithm",
    "JobCreateConfig",
    "JobCreateDatasetType0",
    "JobEventPublic",
    "JobEventPublicData",
    "JobEventPublicType",
    "JobEventsPublic",
    "JobProgress",
    "JobProgressMetrics",
    "JobPublic",
    "JobPublicConfig",
    "JobPublicStatus",
    "JobsPublic",
    "ListJobsStatusType0",
    "ModelPublic",
    "ModelPublicConfig",
    "ModelPublicMetrics",
    "ModelPublicModality",
    "ModelPublicModalityParams",
    "ModelPublicOutput",
    "ModelPublicTrainingTasks",
    "ModelSplitsPublic",
    "ModelSplitsPublicKind",
    "ModelsPublic",
    "PredictionCreate",
    "PredictionsPublic",
    "SplitPublic",
    "SupportSet",
    "TaskCreate",
    "TaskPublic",
    "TaskPublicOptions",
    "TaskPublicStatus",
    "TasksPublic",
)
