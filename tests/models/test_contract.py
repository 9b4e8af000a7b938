"""The learner contract declares everything callers use (issue 13, point 5): every registered
learner builds on a small problem and offers the declared hooks with their declared types, one
constant bounds adaptation steps everywhere (and one constant each other limit), workers and
checkpoints never probe a learner or its config with hasattr/getattr, and every config is a
pydantic model (models.config.Config) refusing bad values with ConfigError("<key> must be ...",
"config.<key>")."""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

import pydantic
import pytest
import torch

from models.config import Config, ConfigError, describe
from models.episodes import Episode, ProblemSpec, Split, SupervisedBatch
from models.learners.base import MAX_ADAPT_STEPS, MAX_INNER_LR, MAX_META_LR, Learner, Params, TrainingBatch
from models.learners.finetune import FinetuneConfig
from models.learners.maml import MAMLConfig
from models.learners.multitask import MultiTaskConfig
from models.learners.registry import LEARNERS, build_learner
from models.mtl_synthetic import MtlSyntheticTasks
from models.recipe import TrainingConfig, resolve
from service.schemas import AdaptationOptions

ROOT = Path(__file__).resolve().parents[2]
N_WAY = 3
SMALL = {"hidden": [8], "channels": 4}  # every learner's config takes these two keys


class TinyClasses:
    """Random 3-way tasks over 4 features, with the supervised batch the fine-tuning baseline
    pretrains on: the smallest family every episodic learner trains on."""

    spec = ProblemSpec(input_shape=(4,), output="classification", n_way=N_WAY)

    def sample(self, split: Split, n_tasks: int, generator: torch.Generator) -> list[Episode]:
        def labels() -> torch.Tensor:
            return torch.arange(N_WAY).repeat(2)  # [6]

        return [
            Episode(torch.randn(6, 4, generator=generator), labels(), torch.randn(6, 4, generator=generator), labels())
            for _ in range(n_tasks)
        ]

    def split_names(self) -> None:
        return None

    def supervised_batch(self, size: int, generator: torch.Generator) -> SupervisedBatch:
        return SupervisedBatch(torch.randn(size, 4, generator=generator), torch.arange(size) % 5, 5)


def _family(cls: type[Learner]) -> TinyClasses | MtlSyntheticTasks:
    if cls.trains_on_fixed_tasks:
        return MtlSyntheticTasks(num_tasks=2, input_dim=4, examples_per_task=50, k_support=5, k_query=5, seed=0)
    return TinyClasses()


def _learner(algorithm: str, family: TinyClasses | MtlSyntheticTasks) -> Learner:
    config: dict[str, typing.Any] = dict(SMALL)
    if LEARNERS[algorithm].trains_on_fixed_tasks:
        assert isinstance(family, MtlSyntheticTasks)
        config = {"hidden": [8], "task_names": family.task_names}
    torch.manual_seed(0)
    return build_learner(algorithm, family.spec, config)


def test_the_hooks_callers_use_are_declared_on_learner_with_their_types():
    hints = typing.get_type_hints(Learner)
    assert hints["optimizer"] is torch.optim.Optimizer
    assert hints["trains_on_fixed_tasks"] == typing.ClassVar[bool]
    assert hints["zero_steps_is_unadapted"] == typing.ClassVar[bool]
    assert typing.get_type_hints(Learner.training_batch)["return"] == TrainingBatch
    assert typing.get_type_hints(Learner.training_task_states)["return"] == dict[str, Params]
    assert typing.get_type_hints(Learner.config_for)["return"] is Config
    assert Learner.trains_on_fixed_tasks is False and Learner.zero_steps_is_unadapted is False


@pytest.mark.parametrize("algorithm", sorted(LEARNERS))
def test_every_learner_builds_and_offers_the_declared_hooks(algorithm):
    cls = LEARNERS[algorithm]
    family = _family(cls)
    learner = _learner(algorithm, family)

    assert isinstance(learner.optimizer, torch.optim.Optimizer)
    assert isinstance(cls.trains_on_fixed_tasks, bool) and isinstance(cls.zero_steps_is_unadapted, bool)
    # The declaration says what the workers used to guess: a config with inner_steps.
    assert cls.zero_steps_is_unadapted == ("inner_steps" in cls.config_class.model_fields)

    configured = cls.config_for(learner.config, family)  # what workers used to probe configs for
    assert isinstance(configured, cls.config_class)
    if cls.trains_on_fixed_tasks:
        assert isinstance(configured, MultiTaskConfig) and configured.task_names == family.task_names
    else:
        assert configured is learner.config

    batch = learner.training_batch(family, 2, torch.Generator().manual_seed(0))
    if isinstance(batch, SupervisedBatch):
        assert algorithm == "finetune"
    else:
        assert isinstance(batch, list) and batch and all(isinstance(ep, Episode) for ep in batch)
    metrics = learner.meta_train_step(batch)  # type: ignore[arg-type]  # what its own training_batch returned
    assert isinstance(metrics["loss"], float)

    states = learner.training_task_states()
    assert isinstance(states, dict)
    if cls.trains_on_fixed_tasks:
        assert isinstance(family, MtlSyntheticTasks)
        assert list(states) == family.task_names
        assert all(isinstance(v, torch.Tensor) for phi in states.values() for v in phi.values())
    else:
        assert states == {}


def test_one_limit_bounds_adaptation_steps_in_every_config_and_the_api():
    for make in (
        lambda n: MAMLConfig(inner_steps=n),
        lambda n: MAMLConfig(adapt_steps=n),
        lambda n: FinetuneConfig(inner_steps=n),
        lambda n: MultiTaskConfig(adapt_steps=n),
    ):
        make(MAX_ADAPT_STEPS)
        with pytest.raises(ValueError, match=str(MAX_ADAPT_STEPS)):
            make(MAX_ADAPT_STEPS + 1)
    assert AdaptationOptions(inner_steps=MAX_ADAPT_STEPS).inner_steps == MAX_ADAPT_STEPS
    with pytest.raises(pydantic.ValidationError):
        AdaptationOptions(inner_steps=MAX_ADAPT_STEPS + 1)
    assert f"`inner_steps` (0 to {MAX_ADAPT_STEPS}" in (ROOT / "README.md").read_text()


PROBED = ("learner", "config", "cfg", "recipe")  # what callers must not probe


def _probes(path: Path, root: Path = ROOT) -> list[str]:
    """hasattr/getattr calls on a learner, a config or a recipe, and dataclass introspection of
    anything (fields, asdict, replace), as `file:line: source`."""
    source = path.read_text()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        bare = func.id if isinstance(func, ast.Name) else None
        dataclass_call = bare in ("fields", "asdict", "replace") or (
            isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "dataclasses"
        )
        target = (ast.get_source_segment(source, node.args[0]) or "") if node.args else ""
        probing = bare in ("hasattr", "getattr") and any(word in target.lower() for word in PROBED)
        if probing or dataclass_call:
            found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.get_source_segment(source, node)}")
    return found


def test_workers_and_checkpoints_never_probe_a_learner_or_its_config():
    files = [*sorted((ROOT / "workers").glob("*.py")), ROOT / "models" / "checkpoint.py"]
    assert len(files) > 2
    probes = [probe for path in files for probe in _probes(path)]
    assert probes == [], "declare the hook on models.learners.base.Learner (or the field on the config) instead:\n" + "\n".join(probes)
    assert "type: ignore[attr-defined]" not in (ROOT / "models" / "checkpoint.py").read_text()


def test_the_probe_finder_finds_the_probes_it_replaced(tmp_path):
    old = tmp_path / "old.py"
    old.write_text(
        "from dataclasses import asdict\n"
        "steps = getattr(learner, 'optimizer', None)\n"
        "if hasattr(config, 'inner_steps'):\n    pass\n"
        "row = asdict(learner.config)\n"
        "name = 'a b'.replace(' ', '-')\n"  # not a probe
    )
    assert sorted(int(p.split(":")[1]) for p in _probes(old, tmp_path)) == [2, 3, 5]


CONFIG_CLASSES = [TrainingConfig, *{cls.config_class for cls in LEARNERS.values()}]


@pytest.mark.parametrize("cls", CONFIG_CLASSES, ids=lambda cls: cls.__name__)
def test_every_config_is_a_pydantic_model_validated_by_one_mechanism(cls):
    assert issubclass(cls, Config) and issubclass(cls, pydantic.BaseModel)
    assert not dataclasses.is_dataclass(cls) and "__post_init__" not in vars(cls)
    defaults = cls() if cls is not MultiTaskConfig else cls(task_names=["a", "b"])
    assert cls(**defaults.to_json()) == defaults  # what is stored loads back
    for key, field in cls.model_fields.items():  # strict types: a bool is no number, a string no int
        wrong = "x" if field.annotation is bool else True
        if field.annotation in (int, float, bool) or typing.get_origin(field.annotation) is list:
            with pytest.raises(ConfigError) as caught:
                cls(**{key: wrong})
            assert caught.value.param == f"config.{key}" and str(caught.value).startswith(f"{key} must be"), caught.value


def test_the_checker_reading_annotations_as_text_is_gone():
    source = (ROOT / "models" / "recipe.py").read_text()
    assert "_check_type" not in source and "__post_init__" not in source
    for path in (ROOT / "models" / "learners").glob("*.py"):
        assert "__post_init__" not in path.read_text(), path


def test_a_config_error_names_the_key_and_what_to_fix():
    with pytest.raises(ConfigError) as caught:
        resolve("maml", "omniglot", {"n_way": 1})
    assert (str(caught.value), caught.value.param) == ("n_way must be between 2 and 100, got 1", "config.n_way")
    with pytest.raises(ConfigError) as caught:
        resolve("maml", "omniglot", {"inner_lr": float("nan")})
    assert caught.value.param == "config.inner_lr" and "(0, 10]" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        resolve("blackbox", "omniglot", {"architecture": "attention", "width": 30, "heads": 4})  # a cross-field check
    assert caught.value.param == "config.heads" and "divide width" in str(caught.value)


def _limit(cls: type[Config], key: str) -> str:
    field = cls.model_fields[key]
    return describe(field.annotation, field.metadata)


def test_one_constant_per_limit_across_learners():
    """A key that several learners' configs share has the same limit in each (the shared field
    types of models.learners.base), and the API's adaptation options use the same numbers."""
    classes = {cls.config_class for cls in LEARNERS.values()}
    shared: dict[str, set[str]] = {}
    for cls in classes:
        for key in cls.model_fields:
            shared.setdefault(key, set()).add(_limit(cls, key))
    for key in ("hidden", "channels", "meta_lr", "inner_lr", "inner_steps"):
        assert len(shared[key]) == 1, (key, shared[key])
    assert _limit(MAMLConfig, "inner_lr") == _limit(MultiTaskConfig, "adapt_lr") == f"a number in (0, {MAX_INNER_LR}]"
    assert _limit(MAMLConfig, "meta_lr") == _limit(MultiTaskConfig, "lr") == f"a number in (0, {MAX_META_LR}]"
    assert _limit(MultiTaskConfig, "adapt_steps") == _limit(FinetuneConfig, "inner_steps") == f"an integer between 0 and {MAX_ADAPT_STEPS}"
    schema = AdaptationOptions.model_json_schema()["properties"]
    assert schema["inner_lr"]["anyOf"][0]["maximum"] == MAX_INNER_LR
    assert schema["inner_steps"]["anyOf"][0]["maximum"] == MAX_ADAPT_STEPS
