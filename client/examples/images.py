"""Adapt an image model to labelled image files and classify more of them, printing each file's label.

    python client/examples/images.py MODEL_ID SUPPORT_DIR QUERY.png ...

SUPPORT_DIR holds one folder of images per label (<label>/<image>.png).
"""

from __future__ import annotations

import sys
from pathlib import Path

from fewshot_client import APIError, Fewshot


def main(model_id: str, support_dir: Path, queries: list[Path]) -> int:
    images = sorted(p for p in support_dir.glob("*/*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    with Fewshot() as fs:
        try:
            task = fs.models.adapt(model_id, images, [p.parent.name for p in images])
            predictions = task.predict(queries)
        except APIError as exc:
            print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
            return 1
    for path, prediction in zip(queries, predictions, strict=True):
        print(f"{path}\t{prediction.label}\t{prediction.probability:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]]))
