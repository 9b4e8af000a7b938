"""A job's recipe: which tasks, which learner, which settings, validated and with defaults."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, model_validator

from models.arrays import SPLIT_FRACTION, ArrayTasks, load_array_file
from models.config import PREFIX, Config, ConfigError, Float
from models.datasets import BUILTIN_DATASETS
from models.episodes import Split, TaskFamily
from models.learners.registry import LEARNERS
from models.mnist import MnistTasks, load_mnist, split_digits
from models.mtl_synthetic import MtlSyntheticTasks
from models.multitask.mnist_groups import MnistDigitGroups
from models.multitask.uploaded import UploadedTasks
from models.omniglot import OmniglotTasks, load_omniglot, split_characters
from models.sinusoid import SinusoidTasks
from models.splits import SplitError
from models.training import DIVERGENCE_FACTOR, VAL_EPISODES, default_eval_every

DATASETS = tuple(BUILTIN_DATASETS)
MULTI_TASK_DATASETS = tuple(d.name for d in BUILTIN_DATASETS.values() if d.named_tasks)  # datasets with named training tasks
UPLOADED_PREFIX = "ds_"  # datasets uploaded through the API, named by id
MAX_STEPS = 1_000_000
MAX_SHOTS = 1000  # k_shot and k_query
MAX_INPUT_DIM = 10_000
MAX_SYNTHETIC_VALUES = 100_000_000  # mtl-synthetic: examples_per_task * num_tasks * input_dim
T = TypeVar("T")
Fraction = Annotated[Float, Field(ge=0, lt=1)]


class TrainingConfig(Config):
    """The settings every learner shares; one line per key, with its constraint."""

    steps: int = Field(2000, ge=1, le=MAX_STEPS)  # outer updates
    meta_batch_size: int = Field(25, ge=1, le=1024)  # tasks per outer update
    n_way: int = Field(5, ge=2, le=100)  # classes per task (classification)
    k_shot: int = Field(1, ge=1, le=MAX_SHOTS)  # support examples per class (points per task for regression)
    k_query: int = Field(15, ge=1, le=MAX_SHOTS)  # query examples per class (points per task for regression)
    seed: int = Field(0, ge=0, le=2**63 - 1)  # seeds torch and numpy
    eval_episodes: int = Field(600, ge=1, le=100_000)  # meta-test tasks scored when training ends
    split_by: Literal["character", "alphabet"] = "character"
    rotations: bool = False  # Omniglot: rotated characters as extra classes
    checkpoint_every: int = Field(500, ge=0, le=MAX_STEPS, description="0: none")  # steps between checkpoints of the learner's state
    num_tasks: int = Field(2, ge=1)  # mtl-synthetic: training tasks (below input_dim)
    relatedness: Float = Field(0.5, ge=-1, le=1)  # mtl-synthetic: p, the cosine between task weights
    input_dim: int = Field(100, ge=2, le=MAX_INPUT_DIM)  # mtl-synthetic: d
    examples_per_task: int = Field(100_000, ge=1)  # mtl-synthetic: fixed training set of each task
    # The job fails with "diverged at step N" when its training loss is non-finite or above this
    # many times its starting level (the mean of its first 10 steps); 0 checks non-finite only.
    divergence_factor: Float = Field(DIVERGENCE_FACTOR, ge=0, description="0: fail on non-finite losses only")
    # Shares of the dataset's classes (or an npz's tasks) held out as meta-val and meta-test; the
    # default depends on the dataset (SPLIT_DEFAULTS); None for datasets without classes to split.
    # test_fraction 0: no meta-test split, and the final metrics come from meta-val.
    val_fraction: Fraction | None = None
    test_fraction: Fraction | None = None
    # Validation while training: every eval_every steps (null: about 20 times a run; 0: never)
    # and at the last step, the learner is scored on val_episodes meta-val tasks (null: 100, at
    # most eval_episodes); the job's progress, events and checkpoints carry val_* metrics. keep
    # "best": the model is the state best on meta-val; "last": the final state. An
    # early_stopping_patience above 0 stops training after that many evaluations in a row
    # without a new best. With val_fraction 0 there is nothing to validate on: the last state.
    eval_every: int | None = Field(None, ge=0, le=MAX_STEPS, description="0: no validation")
    val_episodes: int | None = Field(None, ge=1, le=100_000)
    keep: Literal["best", "last"] = "best"
    early_stopping_patience: int = Field(0, ge=0, le=MAX_STEPS, description="0: off")
    # Omniglot: a random affine map (rotation, scale, shear, shift; models.augment) per training
    # image. Default: RECIPE_DEFAULTS, where a measurement showed it helps; off elsewhere.
    augment: bool = False

    @model_validator(mode="before")
    @classmethod
    def _validation_defaults(cls, values: Any) -> Any:
        """eval_every and val_episodes left null take defaults that depend on steps and eval_episodes."""
        if not isinstance(values, dict):
            return values
        values = dict(values)
        steps, episodes = values.get("steps", 2000), values.get("eval_episodes", 600)
        if values.get("eval_every") is None and isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1:
            values["eval_every"] = default_eval_every(steps)
        if values.get("val_episodes") is None and isinstance(episodes, int) and not isinstance(episodes, bool) and episodes >= 1:
            values["val_episodes"] = min(VAL_EPISODES, episodes)
        return values

    @model_validator(mode="after")
    def _check_synthetic(self) -> TrainingConfig:
        if self.num_tasks >= self.input_dim:
            raise ConfigError(f"num_tasks must be below input_dim ({self.input_dim}), got {self.num_tasks}", PREFIX + "num_tasks")
        if self.examples_per_task * self.num_tasks * self.input_dim > MAX_SYNTHETIC_VALUES:
            raise ConfigError(
                f"examples_per_task * num_tasks * input_dim must be at most {MAX_SYNTHETIC_VALUES:.0e}: lower examples_per_task",
                PREFIX + "examples_per_task",
            )
        if self.early_stopping_patience and (self.eval_every == 0 or self.val_fraction == 0):
            raise ConfigError("early_stopping_patience needs validation: eval_every and val_fraction above 0",
                              PREFIX + "early_stopping_patience")
        return self

    @property
    def validates(self) -> bool:
        """Whether training scores meta-val tasks as it goes."""
        return bool(self.eval_every) and self.val_fraction != 0

    @model_validator(mode="after")
    def _check_fractions(self) -> TrainingConfig:
        if self.val_fraction is None or self.test_fraction is None:
            return self
        if self.val_fraction + self.test_fraction >= 1:
            key = "val_fraction" if self.val_fraction > self.test_fraction else "test_fraction"
            raise ConfigError(
                f"val_fraction + test_fraction must be below 1 (got {self.val_fraction} + {self.test_fraction}): "
                "meta-training takes the rest of the classes", PREFIX + key,
            )
        if self.val_fraction == 0 and self.test_fraction == 0:
            raise ConfigError(
                "val_fraction and test_fraction are both 0: hold out some classes to measure the model on "
                "(with test_fraction 0 the final metrics come from meta-val, so val_fraction must be above 0)",
                PREFIX + "val_fraction",
            )
        return self

    @property
    def evaluated_on(self) -> Split:
        """The split of the final metrics: meta-test, or meta-val when test_fraction is 0."""
        return "val" if self.test_fraction == 0 else "test"


SPLIT_KEYS = ("val_fraction", "test_fraction")
# (val_fraction, test_fraction) of each dataset whose classes (or tasks) are split; uploaded
# datasets (ds_...) take UPLOADED_FRACTIONS. Others draw new tasks for every split.
SPLIT_DEFAULTS: dict[str, tuple[float, float]] = {
    d.name: d.split_fractions for d in BUILTIN_DATASETS.values() if d.split_fractions is not None
}
UPLOADED_FRACTIONS = (SPLIT_FRACTION, SPLIT_FRACTION)


# Defaults of one algorithm on one dataset, chosen by measurement (over DATASET_DEFAULTS, under the
# job's config). ProtoNet on Omniglot: the reference ProtoNet's recipe (Snell et al.: 60-way
# training tasks, 5 queries, rotations as new classes, the learning rate halved 4 times) with
# `augment`, split by alphabet so that whole alphabets stay unseen: 7.25% mean error on the
# one-shot runs of held-out alphabets in 17 minutes on one thread (augmentation-protonet-60way.md),
# 8.75% as a job with validation in 26 minutes (curves-protonet-omniglot.md; 7.25% in 11 minutes once
# Conv4 ran channels-last, curves-protonet-omniglot-session9.md), where the old 5-way
# default with augment gave 13.2% (`augment` alone: 17.8% -> 13.2%, augmentation-protonet.md);
# test-time augmentation with 8 views takes the two 60-way models to 4.75% and 4.0%, so its tasks
# use it unless their options say otherwise (8 times the embedding work per adaptation and
# prediction). MAML on sinusoid: meta_lr 0.01
# and 10 adaptation steps adapt from K=10 points to MSE 0.17 after the default 2,000 steps
# (0.98 with the old 0.001 and one step; benchmarks/results/sinusoid_defaults-*.md).
RECIPE_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("protonet", "omniglot"): {
        "n_way": 60, "k_query": 5, "meta_batch_size": 1, "steps": 3000, "rotations": True, "augment": True,
        "split_by": "alphabet", "channels": 32, "meta_lr": 0.003, "lr_decay_every": 600, "test_time_augmentation": 8,
    },
    ("maml", "sinusoid"): {"meta_lr": 0.01, "adapt_steps": 10},
}

DATASET_DEFAULTS: dict[str, dict[str, Any]] = {d.name: d.defaults for d in BUILTIN_DATASETS.values()}


@dataclass(frozen=True)
class Recipe:
    algorithm: str
    dataset: str
    training: TrainingConfig
    learner: Config  # the learner's config (its config_class)

    def to_json(self) -> dict[str, Any]:
        """The full configuration, defaults filled in, as one flat dict."""
        return {**self.training.to_json(), **self.learner.to_json()}

    def learner_json(self) -> dict[str, Any]:
        return self.learner.to_json()


def resolve(algorithm: str, dataset: str, config: dict[str, Any]) -> Recipe:
    """Validate a job's (algorithm, dataset, config) and fill defaults; raises ConfigError."""
    if algorithm not in LEARNERS:
        raise ConfigError(f"unknown algorithm {algorithm!r}; choose one of {', '.join(sorted(LEARNERS))}", "algorithm")
    if dataset not in DATASETS and not dataset.startswith(UPLOADED_PREFIX):
        raise ConfigError(
            f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)} or an uploaded dataset's id (ds_...)",
            "dataset",
        )
    learner_cls = LEARNERS[algorithm].config_class
    train_keys = TrainingConfig.keys()
    learner_keys = learner_cls.keys()
    unknown = sorted(set(config) - train_keys - learner_keys)
    if unknown:
        raise ConfigError(
            f"unknown config key {unknown[0]!r} for {algorithm}; known keys: {', '.join(sorted(train_keys | learner_keys))}",
            f"config.{unknown[0]}",
        )
    named = dataset in MULTI_TASK_DATASETS or dataset.startswith(UPLOADED_PREFIX)  # uploads: an npz with `task`
    if LEARNERS[algorithm].trains_on_fixed_tasks and not named:
        raise ConfigError(
            f"{algorithm} trains on named tasks: choose dataset {', '.join(MULTI_TASK_DATASETS)} or an npz with a task array",
            "dataset",
        )
    config = {k: v for k, v in config.items() if not (k in SPLIT_KEYS and v is None)}  # null: the dataset's default
    merged = {**DATASET_DEFAULTS.get(dataset, {}), **RECIPE_DEFAULTS.get((algorithm, dataset), {}),
              **_split_defaults(algorithm, dataset, config), **config}
    if dataset == "mtl-synthetic":  # one minibatch of every task per step unless asked otherwise
        merged.setdefault("meta_batch_size", merged.get("num_tasks", 2))
    training = TrainingConfig(**{k: v for k, v in merged.items() if k in train_keys})
    learner = learner_cls(**{k: v for k, v in merged.items() if k in learner_keys})
    if training.augment and dataset != "omniglot":
        raise ConfigError(f"augment applies to omniglot's images only, not to {dataset!r}", PREFIX + "augment")
    if dataset == "mnist" and training.val_fraction is not None and training.test_fraction is not None:
        try:  # ten digits: whether the fractions leave every split enough is known now
            split_digits(training.val_fraction, training.test_fraction, training.n_way)
        except SplitError as exc:
            raise ConfigError(str(exc), PREFIX + exc.param) from None
    return Recipe(algorithm, dataset, training, learner)


def _split_defaults(algorithm: str, dataset: str, config: dict[str, Any]) -> dict[str, float]:
    """The dataset's default val_fraction and test_fraction; none for a dataset without classes to
    split, where setting either (to anything but null) is an error that says so."""
    fixed_digit_groups = dataset == "mnist" and LEARNERS[algorithm].trains_on_fixed_tasks
    fractions = UPLOADED_FRACTIONS if dataset.startswith(UPLOADED_PREFIX) else SPLIT_DEFAULTS.get(dataset)
    if fractions is None or fixed_digit_groups:
        given = next((key for key in SPLIT_KEYS if key in config), None)
        if given is not None:
            why = ("trains on fixed digit groups and adapts to other sets of digits" if fixed_digit_groups
                   else "draws new tasks for every split")
            raise ConfigError(f"{algorithm} on {dataset} {why}: there are no classes to split, so {given} does not apply",
                              PREFIX + given)
        return {}
    return dict(zip(SPLIT_KEYS, fractions, strict=True))


@dataclass(frozen=True)
class DataSources:
    """Where datasets live on this machine (the caller reads them from its settings)."""

    omniglot_dir: Path
    cache_dir: Path | None = None
    mnist_dir: Path | None = None
    dataset_file: Callable[[str], Path] | None = None  # an uploaded dataset's id -> its arrays file


def build_tasks(recipe: Recipe, sources: DataSources) -> TaskFamily:
    cfg = recipe.training
    if recipe.dataset == "sinusoid":
        return SinusoidTasks(k_support=cfg.k_shot, k_query=cfg.k_query)
    if recipe.dataset == "omniglot":
        data = _omniglot(sources.omniglot_dir, sources.cache_dir)
        min_chars = -(-cfg.n_way // 4) if cfg.rotations else cfg.n_way  # each character gives 4 classes when rotated
        splits = _split(lambda: split_characters(data, cfg.split_by, cfg.seed, _fractions(cfg), min_chars))
        return OmniglotTasks(data, splits, cfg.n_way, cfg.k_shot, cfg.k_query, cfg.rotations, cfg.augment)
    if recipe.dataset == "mtl-synthetic":
        return MtlSyntheticTasks(cfg.num_tasks, cfg.relatedness, cfg.input_dim, cfg.examples_per_task, cfg.k_shot, cfg.k_query, cfg.seed)
    if recipe.dataset == "mnist":
        if sources.mnist_dir is None:
            raise ConfigError("dataset 'mnist' needs its IDX files: set FEWSHOT_MNIST_DIR", "dataset")
        images, labels = _mnist(sources.mnist_dir)
        if LEARNERS[recipe.algorithm].trains_on_fixed_tasks:  # digit groups as named tasks
            return MnistDigitGroups(images, labels, cfg.n_way, cfg.k_shot, cfg.k_query, cfg.seed)
        digits = _split(lambda: split_digits(*_fractions(cfg), cfg.n_way))  # default: 0-4 train, 5-9 test
        return MnistTasks(images, labels, cfg.n_way, cfg.k_shot, cfg.k_query, digits)
    if recipe.dataset.startswith(UPLOADED_PREFIX):
        if sources.dataset_file is None:
            raise ConfigError(f"uploaded dataset {recipe.dataset!r} cannot be read here", "dataset")
        data = load_array_file(str(sources.dataset_file(recipe.dataset)))
        if LEARNERS[recipe.algorithm].trains_on_fixed_tasks:  # its `task` array names the tasks
            return _split(lambda: UploadedTasks(data, cfg.k_shot, cfg.k_query, cfg.seed, *_fractions(cfg)))
        return _split(lambda: ArrayTasks(data, cfg.n_way, cfg.k_shot, cfg.k_query, cfg.seed, *_fractions(cfg)))
    raise ConfigError(f"unknown dataset {recipe.dataset!r}", "dataset")


def _fractions(cfg: TrainingConfig) -> tuple[float, float]:
    assert cfg.val_fraction is not None and cfg.test_fraction is not None  # resolve() filled them for this dataset
    return cfg.val_fraction, cfg.test_fraction


def _split(build: Callable[[], T]) -> T:
    """build(), with a SplitError turned into the ConfigError that names its key."""
    try:
        return build()
    except SplitError as exc:
        raise ConfigError(str(exc), PREFIX + exc.param) from None


@functools.lru_cache(maxsize=2)
def _mnist(root: Path):  # type: ignore[no-untyped-def]
    return load_mnist(root)


@functools.lru_cache(maxsize=4)
def _omniglot(root: Path, cache_dir: Path | None):  # type: ignore[no-untyped-def]
    return load_omniglot(root, cache_dir)
