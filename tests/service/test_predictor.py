"""The API process serves predictions from many request threads at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

from models.direct_grad import is_folded as folded
from models.episodes import ProblemSpec
from models.learners.maml import MAML, MAMLConfig
from service.predictor import Predictor
from store.artifacts import ArtifactStore, state_key, theta_key
from store.db import Model, Task


def test_concurrent_predictions_for_different_tasks_of_one_model_stay_apart(tmp_path):
    torch.manual_seed(0)
    spec = ProblemSpec(input_shape=(1,), output="regression", output_dim=1)
    learner = MAML(spec, MAMLConfig(inner_lr=0.1, inner_steps=5))
    store = ArtifactStore(tmp_path)
    store.save(theta_key("mdl_a"), learner.state())
    model = Model(id="mdl_a", job_id="job_a", algorithm="maml", dataset="sinusoid", spec=spec.to_json(),
                  learner_config={"inner_lr": 0.1, "inner_steps": 5}, metrics={}, artifact=theta_key("mdl_a"))
    x = torch.linspace(-5, 5, 20).unsqueeze(1)
    tasks, expected = [], {}
    for i, amplitude in enumerate([-4.0, 4.0]):  # two tasks pulled far apart
        phi = learner.adapt(x, amplitude * torch.ones_like(x))
        store.save(state_key(f"tsk_{i}"), phi)
        tasks.append(Task(id=f"tsk_{i}", model_id="mdl_a", status="ready", support_size=20, artifact=state_key(f"tsk_{i}")))
        expected[f"tsk_{i}"] = learner.predict(phi, x)
    predictor = Predictor(store, task_capacity=8)

    def run(task: Task) -> bool:
        return torch.equal(predictor.predict(model, task, x), expected[task.id])

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, [tasks[i % 2] for i in range(400)]))
    assert all(results)


def test_cached_states_take_the_learners_serving_form_and_predict_the_same(tmp_path):
    """A Conv4 MAML task's state is cached in its serving form on the CPU (MAML.serving_state: batch
    norms folded into convolution weights laid out channels-last), and predicts what the stored
    state predicts; a state without support statistics is cached with the same values, channels-last."""
    torch.manual_seed(0)
    spec = ProblemSpec(input_shape=(1, 28, 28), output="classification", n_way=5)
    config = {"channels": 8, "inner_lr": 0.4, "inner_steps": 2}
    learner = MAML(spec, MAMLConfig(**config))
    store = ArtifactStore(tmp_path)
    store.save(theta_key("mdl_c"), learner.state())
    model = Model(id="mdl_c", job_id="job_c", algorithm="maml", dataset="omniglot", spec=spec.to_json(),
                  learner_config=config, metrics={}, artifact=theta_key("mdl_c"))
    phi = learner.adapt(torch.rand(5, 1, 28, 28), torch.arange(5))
    store.save(state_key("tsk_c"), phi)
    task = Task(id="tsk_c", model_id="mdl_c", status="ready", support_size=5, artifact=state_key("tsk_c"))
    predictor = Predictor(store, task_capacity=8)
    for n in (1, 6):
        x = torch.rand(n, 1, 28, 28)
        got, expected = predictor.predict(model, task, x), learner.predict(store.load(state_key("tsk_c")), x)
        assert (got - expected).abs().max() <= 1e-5 and torch.equal(got.argmax(1), expected.argmax(1))
    cached = predictor.states.peek("tsk_c")
    assert cached is not None and folded(cached)
    assert all(v.is_contiguous(memory_format=torch.channels_last) for v in cached.values() if v.dim() == 4)
    assert all(torch.equal(cached[k], phi[k]) for k in ("head.weight", "head.bias"))
    weights_only = {k: v for k, v in phi.items() if "task_" not in k}  # a state stored before support statistics
    store.save(state_key("tsk_w"), weights_only)
    old = Task(id="tsk_w", model_id="mdl_c", status="ready", support_size=5, artifact=state_key("tsk_w"))
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(predictor.predict(model, old, x), learner.predict(weights_only, x), atol=1e-5)
    cached = predictor.states.peek("tsk_w")
    assert cached is not None and not folded(cached) and set(cached) == set(weights_only)
    assert all(v.is_contiguous(memory_format=torch.channels_last) for v in cached.values() if v.dim() == 4)
    assert all(torch.equal(cached[k], weights_only[k]) for k in weights_only)  # the same values, laid out for the CPU
