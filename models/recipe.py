"""A job's recipe: which tasks, which learner, which settings, validated and with defaults."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

from models.arrays import SPLIT_FRACTION, ArrayTasks, load_array_file
from models.episodes import Split, TaskFamily
from models.learners.registry import LEARNERS
from models.mnist import DEFAULT_FRACTIONS, MnistTasks, load_mnist, split_digits
from models.mtl_synthetic import MtlSyntheticTasks
from models.multitask.mnist_groups import MnistDigitGroups
from models.multitask.uploaded import UploadedTasks
from models.omniglot import OmniglotTasks, load_omniglot, split_characters
from models.sinusoid import SinusoidTasks
from models.splits import SplitError
from models.training import DIVERGENCE_FACTOR, VAL_EPISODES, default_eval_every

DATASETS = ("sinusoid", "omniglot", "mnist", "mtl-synthetic")
MULTI_TASK_DATASETS = ("mtl-synthetic", "mnist")  # datasets with named training tasks
UPLOADED_PREFIX = "ds_"  # datasets uploaded through the API, named by id
MAX_STEPS = 1_000_000
FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32
T = TypeVar("T")


class ConfigError(ValueError):
    """A job configuration that cannot run; `param` names the offending key."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass
class TrainingConfig:
    steps: int = 2000  # outer updates
    meta_batch_size: int = 25  # tasks per outer update
    n_way: int = 5  # classes per task (classification)
    k_shot: int = 1  # support examples per class (points per task for regression)
    k_query: int = 15  # query examples per class (points per task for regression)
    seed: int = 0
    eval_episodes: int = 600  # meta-test tasks scored when training ends
    split_by: Literal["character", "alphabet"] = "character"
    rotations: bool = False  # Omniglot: rotated characters as extra classes
    checkpoint_every: int = 500  # steps between checkpoints of the learner's state (0: none)
    num_tasks: int = 2  # mtl-synthetic: training tasks
    relatedness: float = 0.5  # mtl-synthetic: p, the cosine between task weights
    input_dim: int = 100  # mtl-synthetic: d
    examples_per_task: int = 100_000  # mtl-synthetic: fixed training set of each task
    # The job fails with "diverged at step N" when its training loss is non-finite or above this
    # many times its starting level (the mean of its first 10 steps); 0 checks non-finite only.
    divergence_factor: float = DIVERGENCE_FACTOR
    # Shares of the dataset's classes (or an npz's tasks) held out as meta-val and meta-test; the
    # default depends on the dataset (SPLIT_DEFAULTS); None for datasets without classes to split.
    # test_fraction 0: no meta-test split, and the final metrics come from meta-val.
    val_fraction: float | None = None
    test_fraction: float | None = None
    # Validation while training: every eval_every steps (null: about 20 times a run; 0: never)
    # and at the last step, the learner is scored on val_episodes meta-val tasks (null: 100, at
    # most eval_episodes); the job's progress, events and checkpoints carry val_* metrics. keep
    # "best": the model is the state best on meta-val; "last": the final state. An
    # early_stopping_patience above 0 stops training after that many evaluations in a row
    # without a new best. With val_fraction 0 there is nothing to validate on: the last state.
    eval_every: int | None = None
    val_episodes: int | None = None
    keep: Literal["best", "last"] = "best"
    early_stopping_patience: int = 0
    # Omniglot: a random affine map (rotation, scale, shear, shift; models.augment) per training
    # image. Default: AUGMENT_DEFAULTS, where a measurement showed it helps; off elsewhere.
    augment: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= MAX_STEPS:
            raise ConfigError(f"steps must be between 1 and {MAX_STEPS}", "steps")
        if not 1 <= self.meta_batch_size <= 1024:
            raise ConfigError("meta_batch_size must be between 1 and 1024", "meta_batch_size")
        if not 2 <= self.n_way <= 100:
            raise ConfigError("n_way must be between 2 and 100", "n_way")
        if not 1 <= self.k_shot <= 1000 or not 1 <= self.k_query <= 1000:
            raise ConfigError("k_shot and k_query must be between 1 and 1000", "k_shot")
        if not 1 <= self.eval_episodes <= 100_000:
            raise ConfigError("eval_episodes must be between 1 and 100000", "eval_episodes")
        if not 0 <= self.checkpoint_every <= MAX_STEPS:
            raise ConfigError(f"checkpoint_every must be between 0 (none) and {MAX_STEPS}", "checkpoint_every")
        if self.split_by not in ("character", "alphabet"):
            raise ConfigError("split_by must be 'character' or 'alphabet'", "split_by")
        if not 2 <= self.input_dim <= 10_000 or not 1 <= self.num_tasks < self.input_dim:
            raise ConfigError("input_dim must be between 2 and 10000 and num_tasks between 1 and input_dim - 1", "num_tasks")
        if not -1 <= self.relatedness <= 1:
            raise ConfigError("relatedness must be between -1 and 1", "relatedness")
        if not 0 <= self.divergence_factor < math.inf:
            raise ConfigError("divergence_factor must be a finite number >= 0 (0: fail on non-finite losses only)", "divergence_factor")
        if not 1 <= self.examples_per_task or self.examples_per_task * self.num_tasks * self.input_dim > 100_000_000:
            raise ConfigError("examples_per_task must be positive, with examples_per_task * num_tasks * input_dim <= 1e8", "examples_per_task")
        self._check_fractions()
        self._check_validation()

    def _check_validation(self) -> None:
        if self.eval_every is None:
            self.eval_every = default_eval_every(self.steps)
        if not 0 <= self.eval_every <= MAX_STEPS:
            raise ConfigError(f"eval_every must be between 0 (no validation) and {MAX_STEPS}", "eval_every")
        if self.val_episodes is None:
            self.val_episodes = min(VAL_EPISODES, self.eval_episodes)
        if not 1 <= self.val_episodes <= 100_000:
            raise ConfigError("val_episodes must be between 1 and 100000", "val_episodes")
        if self.keep not in ("best", "last"):
            raise ConfigError("keep must be 'best' (the state best on meta-val) or 'last'", "keep")
        if not 0 <= self.early_stopping_patience <= MAX_STEPS:
            raise ConfigError("early_stopping_patience must be between 0 (off) and 1000000", "early_stopping_patience")
        if self.early_stopping_patience and (self.eval_every == 0 or self.val_fraction == 0):
            raise ConfigError("early_stopping_patience needs validation: eval_every and val_fraction above 0", "early_stopping_patience")

    @property
    def validates(self) -> bool:
        """Whether training scores meta-val tasks as it goes."""
        return bool(self.eval_every) and self.val_fraction != 0

    def _check_fractions(self) -> None:
        for key in SPLIT_KEYS:
            value = getattr(self, key)
            if value is not None and not 0 <= value < 1:
                raise ConfigError(f"{key} must be at least 0 and below 1, got {value}", key)
        if self.val_fraction is None or self.test_fraction is None:
            return
        if self.val_fraction + self.test_fraction >= 1:
            key = "val_fraction" if self.val_fraction > self.test_fraction else "test_fraction"
            raise ConfigError(
                f"val_fraction + test_fraction must be below 1 (got {self.val_fraction} + {self.test_fraction}): "
                "meta-training takes the rest of the classes", key,
            )
        if self.val_fraction == 0 and self.test_fraction == 0:
            raise ConfigError(
                "val_fraction and test_fraction are both 0: hold out some classes to measure the model on "
                "(with test_fraction 0 the final metrics come from meta-val, so val_fraction must be above 0)",
                "val_fraction",
            )

    @property
    def evaluated_on(self) -> Split:
        """The split of the final metrics: meta-test, or meta-val when test_fraction is 0."""
        return "val" if self.test_fraction == 0 else "test"


SPLIT_KEYS = ("val_fraction", "test_fraction")
# (val_fraction, test_fraction) of each dataset whose classes (or tasks) are split; uploaded
# datasets (ds_...) take UPLOADED_FRACTIONS. Others draw new tasks for every split.
SPLIT_DEFAULTS: dict[str, tuple[float, float]] = {"omniglot": (0.1, 0.25), "mnist": DEFAULT_FRACTIONS}
UPLOADED_FRACTIONS = (SPLIT_FRACTION, SPLIT_FRACTION)


# Defaults of one algorithm on one dataset, chosen by measurement (over DATASET_DEFAULTS, under the
# job's config). ProtoNet on Omniglot: `augment` lowers its one-shot-runs error from 17.8% to 13.2%
# at 1,000 steps (benchmarks/results/augmentation-protonet.md). MAML on sinusoid: meta_lr 0.01
# and 10 adaptation steps adapt from K=10 points to MSE 0.17 after the default 2,000 steps
# (0.98 with the old 0.001 and one step; benchmarks/results/sinusoid_defaults-*.md).
RECIPE_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("protonet", "omniglot"): {"augment": True},
    ("maml", "sinusoid"): {"meta_lr": 0.01, "adapt_steps": 10},
}

DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "sinusoid": {"k_shot": 10, "k_query": 10, "meta_batch_size": 25, "inner_lr": 0.01},
    "omniglot": {"n_way": 5, "k_shot": 1, "k_query": 15, "meta_batch_size": 32, "inner_lr": 0.4},
    "mnist": {"n_way": 5, "k_shot": 1, "k_query": 15, "meta_batch_size": 32, "inner_lr": 0.4},
    "mtl-synthetic": {"k_shot": 10, "k_query": 118, "eval_episodes": 100, "inner_lr": 0.01},  # meta_batch_size: num_tasks
}


@dataclass(frozen=True)
class Recipe:
    algorithm: str
    dataset: str
    training: TrainingConfig
    learner: Any  # the learner's config dataclass

    def to_json(self) -> dict[str, Any]:
        """The full configuration, defaults filled in, as one flat dict."""
        return {**asdict(self.training), **asdict(self.learner)}

    def learner_json(self) -> dict[str, Any]:
        return asdict(self.learner)


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
    train_keys = {f.name for f in fields(TrainingConfig)}
    learner_keys = {f.name for f in fields(learner_cls)}
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
    training = _build(TrainingConfig, {k: v for k, v in merged.items() if k in train_keys})
    learner = _build(learner_cls, {k: v for k, v in merged.items() if k in learner_keys})
    if training.augment and dataset != "omniglot":
        raise ConfigError(f"augment applies to omniglot's images only, not to {dataset!r}", "augment")
    if dataset == "mnist" and training.val_fraction is not None and training.test_fraction is not None:
        try:  # ten digits: whether the fractions leave every split enough is known now
            split_digits(training.val_fraction, training.test_fraction, training.n_way)
        except SplitError as exc:
            raise ConfigError(str(exc), exc.param) from None
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
            raise ConfigError(f"{algorithm} on {dataset} {why}: there are no classes to split, so {given} does not apply", given)
        return {}
    return dict(zip(SPLIT_KEYS, fractions, strict=True))


def _build(cls: type, values: dict[str, Any]) -> Any:
    for f in fields(cls):
        if f.name in values:
            _check_type(f.name, values[f.name], f.type)
    try:
        return cls(**values)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _check_type(name: str, value: Any, annotation: Any) -> None:
    text = str(annotation)
    ok = True
    if value is None and text.endswith("| None"):
        return
    if text.startswith("int"):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif text.startswith("float"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and not abs(value) <= FLOAT32_MAX:  # NaN included: learning rates and the like end up in float32 tensors
            raise ConfigError(f"config.{name} is {value!r:.30}, outside float32's finite range (|x| <= {FLOAT32_MAX:.8g})", f"config.{name}")
    elif text == "bool":
        ok = isinstance(value, bool)
    elif text.startswith("list[int]"):
        ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    elif text.startswith("Literal"):
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"config.{name} must be of type {text}, got {value!r}", f"config.{name}")


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
        raise ConfigError(str(exc), exc.param) from None


@functools.lru_cache(maxsize=2)
def _mnist(root: Path):  # type: ignore[no-untyped-def]
    return load_mnist(root)


@functools.lru_cache(maxsize=4)
def _omniglot(root: Path, cache_dir: Path | None):  # type: ignore[no-untyped-def]
    return load_omniglot(root, cache_dir)
