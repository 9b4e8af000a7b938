"""MNIST (LeCun et al.) read from the IDX files, and N-way K-shot tasks over its digits.

Any of `train-images-idx3-ubyte[.gz]`, `t10k-images-idx3-ubyte[.gz]` (with the matching
`*-labels-idx1-ubyte[.gz]`) found in the folder are read and concatenated. Digits are white
strokes on black, so the images are already in model space (strokes = 1), as Omniglot's are
after inversion: a model meta-trained on Omniglot can be meta-tested on MNIST tasks.
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from models.episodes import Episode, ImageFormat, ProblemSpec, Split, SplitNames, SupervisedBatch
from models.modality import ImageModality
from models.splits import split_in_order

log = logging.getLogger(__name__)

MNIST_FORMAT = ImageFormat(size=28, invert=False)  # user PNGs: light digit on dark ground
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
SETS = ("train", "t10k")
# Default class splits for meta-training on MNIST itself: digits never shared between splits.
DEFAULT_SPLITS: dict[Split, list[int]] = {"train": [0, 1, 2, 3, 4], "val": [], "test": [5, 6, 7, 8, 9]}
DEFAULT_FRACTIONS = (0.0, 0.5)  # (val_fraction, test_fraction) that give DEFAULT_SPLITS


def split_digits(val_fraction: float, test_fraction: float, n_way: int) -> dict[Split, list[int]]:
    """Digits in order: the lowest meta-train, then meta-val, the highest meta-test (no seed:
    the defaults give 0-4 and 5-9). Raises SplitError naming the fraction to change."""
    return split_in_order(10, val_fraction, test_fraction, min_size=n_way, unit="digits")


def _open(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def _find(root: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (root / name).exists():
            return root / name
    return None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """One IDX file as a uint8 array; raises ValueError on a file that is not the IDX kind asked."""
    raw = _open(path)
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise ValueError(f"{path} is not an IDX file of the expected kind (magic {found}, want {magic})")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: {body.size} bytes of data for shape {dims}")
    return body.reshape(dims)


def load_mnist(root: Path) -> tuple[Tensor, Tensor]:
    """All MNIST images under root: ([N, 28, 28] float32 in [0, 1], [N] int64 digit labels)."""
    if not root.exists():
        raise FileNotFoundError(
            f"no MNIST data at {root}: point FEWSHOT_MNIST_DIR at a folder holding "
            "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (or the train-* pair)"
        )
    images, labels = [], []
    for name in SETS:
        img_path = _find(root, f"{name}-images-idx3-ubyte")
        lbl_path = _find(root, f"{name}-labels-idx1-ubyte")
        if img_path is None or lbl_path is None:
            continue
        imgs, lbls = read_idx(img_path, IMAGE_MAGIC), read_idx(lbl_path, LABEL_MAGIC)
        if len(imgs) != len(lbls):
            raise ValueError(f"{img_path} has {len(imgs)} images but {lbl_path} has {len(lbls)} labels")
        images.append(imgs)
        labels.append(lbls)
    if not images:
        raise FileNotFoundError(f"no *-images-idx3-ubyte[.gz] with matching labels file in {root}")
    pixels = np.concatenate(images)  # [N, 28, 28] uint8
    log.info("read %d MNIST digits from %s", len(pixels), root)
    return (
        torch.from_numpy(pixels.astype(np.float32) / 255.0),
        torch.from_numpy(np.concatenate(labels).astype(np.int64)),
    )


@dataclass
class MnistTasks:
    """N-way K-shot episodes with Q queries per class over the digits of each split.

    `splits` maps a split to its digits; they must not overlap. `meta_test_family` puts all
    ten digits in "test" for evaluating a model meta-trained elsewhere (Omniglot).
    """

    images: Tensor  # [N, 28, 28]
    labels: Tensor  # [N]
    n_way: int = 5
    k_shot: int = 1
    k_query: int = 15
    splits: dict[Split, list[int]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_SPLITS.items()})

    def __post_init__(self) -> None:
        seen: set[int] = set()
        for split, digits in self.splits.items():
            if seen & set(digits):
                raise ValueError(f"MNIST splits overlap on digits {sorted(seen & set(digits))}")
            seen |= set(digits)
            if digits and len(digits) < self.n_way:
                raise ValueError(
                    f"split {split!r} has {len(digits)} digits, too few for {self.n_way}-way tasks; lower n_way"
                )
        self._by_digit = {d: torch.nonzero(self.labels == d).flatten() for d in range(10)}
        need = self.k_shot + self.k_query
        for digit in seen:
            if len(self._by_digit[digit]) < need:
                raise ValueError(f"digit {digit} has {len(self._by_digit[digit])} images, fewer than k_shot + k_query")

    @classmethod
    def meta_test_family(cls, images: Tensor, labels: Tensor, n_way: int = 5, k_shot: int = 1, k_query: int = 15) -> MnistTasks:
        """Every digit in the test split: MNIST as an out-of-domain meta-test set."""
        return cls(images, labels, n_way, k_shot, k_query, {"train": [], "val": [], "test": list(range(10))})

    @property
    def spec(self) -> ProblemSpec:
        size = self.images.shape[-1]
        return ProblemSpec.of(ImageModality(1, size, MNIST_FORMAT.invert), "classification", n_way=self.n_way)

    def sample(self, split: Split, n_tasks: int, generator: torch.Generator) -> list[Episode]:
        digits = self.splits.get(split, [])
        if not digits:
            raise ValueError(f"this MNIST task family has no digits in split {split!r}")
        return [self._episode(digits, generator) for _ in range(n_tasks)]

    def split_names(self) -> SplitNames:
        return SplitNames.of("classes", self.splits, [str(d) for d in range(10)])

    def _episode(self, digits: list[int], generator: torch.Generator) -> Episode:
        picked = torch.randperm(len(digits), generator=generator)[: self.n_way].tolist()
        shots = self.k_shot + self.k_query
        support, query = [], []
        for i in picked:
            pool = self._by_digit[digits[i]]
            chosen = pool[torch.randperm(len(pool), generator=generator)[:shots]]
            imgs = self.images[chosen]  # [shots, 28, 28]
            support.append(imgs[: self.k_shot])
            query.append(imgs[self.k_shot :])
        labels = torch.arange(self.n_way)
        return Episode(
            support_x=torch.cat(support).unsqueeze(1),  # [N*K, 1, 28, 28]
            support_y=labels.repeat_interleave(self.k_shot),
            query_x=torch.cat(query).unsqueeze(1),  # [N*Q, 1, 28, 28]
            query_y=labels.repeat_interleave(self.k_query),
        )

    def supervised_batch(self, size: int, generator: torch.Generator) -> SupervisedBatch:
        """`size` random images of the train digits, labelled by their index in splits["train"]."""
        digits = self.splits["train"]
        classes = torch.randint(len(digits), (size,), generator=generator)  # [B]
        picks = []
        for c in classes.tolist():
            pool = self._by_digit[digits[c]]
            picks.append(int(pool[torch.randint(len(pool), (1,), generator=generator)]))
        return SupervisedBatch(self.images[picks].unsqueeze(1), classes, len(digits))
