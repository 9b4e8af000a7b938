"""The learner contract declares everything callers use (issue 13, point 5): every registered
learner builds on a small problem and offers the declared hooks with their declared types, one
constant bounds adaptation steps everywhere, and workers and checkpoints never probe a learner
with hasattr/getattr."""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

import pydantic
import pytest
import torch

from models.episodes import Episode, ProblemSpec, Split, SupervisedBatch
from models.learners.base import MAX_ADAPT_STEPS, Learner, Params, TrainingBatch
from models.learners.finetune import FinetuneConfig
from models.learners.maml import MAMLConfig
from models.learners.multitask import MultiTaskConfig
from models.learners.registry import LEARNERS, build_learner
from models.mtl_synthetic import MtlSyntheticTasks
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
    assert Learner.trains_on_fixed_tasks is False and Learner.zero_steps_is_unadapted is False


@pytest.mark.parametrize("algorithm", sorted(LEARNERS))
def test_every_learner_builds_and_offers_the_declared_hooks(algorithm):
    cls = LEARNERS[algorithm]
    family = _family(cls)
    learner = _learner(algorithm, family)

    assert isinstance(learner.optimizer, torch.optim.Optimizer)
    assert isinstance(cls.trains_on_fixed_tasks, bool) and isinstance(cls.zero_steps_is_unadapted, bool)
    # The declaration says what the workers used to guess: a config with inner_steps.
    assert cls.zero_steps_is_unadapted == ("inner_steps" in {f.name for f in dataclasses.fields(cls.config_class)})

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


def _probes_of_learners(path: Path) -> list[str]:
    """hasattr/getattr calls whose object mentions a learner, as `file:line: source`."""
    source = path.read_text()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr"):
            target = ast.get_source_segment(source, node.args[0]) or ""
            if "learner" in target.lower():
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.get_source_segment(source, node)}")
    return found


def test_workers_and_checkpoints_never_probe_a_learner():
    files = [*sorted((ROOT / "workers").glob("*.py")), ROOT / "models" / "checkpoint.py"]
    assert len(files) > 2
    probes = [probe for path in files for probe in _probes_of_learners(path)]
    assert probes == [], "declare the hook on models.learners.base.Learner instead:\n" + "\n".join(probes)
    assert "type: ignore[attr-defined]" not in (ROOT / "models" / "checkpoint.py").read_text()
