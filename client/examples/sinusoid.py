"""Meta-train MAML on sine waves, adapt to one new wave from 10 points, predict; then export the weights.

    FEWSHOT_URL=http://127.0.0.1:8000 python client/examples/sinusoid.py
"""

from __future__ import annotations

import math

from fewshot_client import Fewshot, JobEvent


def show(event: JobEvent) -> None:
    if event.type == "progress":
        print(f"step {event.data['step']}/{event.data['total_steps']}  loss {event.data['metrics'].get('loss', 0):.3f}")
    elif event.type == "status":
        print(f"status {event.data['status']}")


def main() -> None:
    with Fewshot() as fs:
        job = fs.jobs.create("maml", "sinusoid", config={"steps": 300, "meta_batch_size": 5},
                             name="sine-demo", metadata={"owner": "examples"})
        job = job.wait(timeout=600, on_event=show)
        if job.status != "succeeded" or job.model_id is None:
            raise SystemExit(f"job {job.id} {job.status}: {job.error}")
        model = fs.models.get(job.model_id)
        print(f"model {model.id}: {model.metrics}")

        xs = [[-4.0 + 0.9 * i] for i in range(10)]
        task = model.adapt(xs, [3 * math.sin(x[0] - 1) for x in xs])
        for x, prediction in zip([-3.5, 0.5, 2.5], task.predict([[-3.5], [0.5], [2.5]]), strict=True):
            print(f"x={x:+.1f}  predicted {prediction.label:+.3f}  truth {3 * math.sin(x - 1):+.3f}")
        print("weights:", fs.models.export(model.id, f"{model.id}.safetensors"))


if __name__ == "__main__":
    main()
