"""Omniglot (Lake et al., 2015) read from the official archives, and its N-way K-shot tasks.

The official layout is `images_<set>/<Alphabet>/<characterNN>/<id>_<drawer>.png`, inside
`images_<set>.zip` or extracted. Every archive or folder under the directory is read;
alphabets that appear in two archives (the small background sets share Greek and Latin)
are read once.
"""

from __future__ import annotations

import hashlib
import io
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from models.augment import random_affine
from models.episodes import Episode, ImageFormat, ProblemSpec, Split, SplitNames, SupervisedBatch
from models.images import image_to_array
from models.modality import ImageModality
from models.splits import SplitError, split_at_random

log = logging.getLogger(__name__)

DRAWINGS_PER_CHARACTER = 20
OMNIGLOT_FORMAT = ImageFormat(size=28, invert=True)


@dataclass(frozen=True)
class OmniglotImages:
    images: torch.Tensor  # [n_characters, 20, size, size] float32 in [0, 1], strokes = 1
    alphabets: list[str]  # alphabet of each character
    characters: list[str]  # "<Alphabet>/<characterNN>"


def find_archives(root: Path) -> list[Path]:
    """The `images_*.zip` archives and extracted `images_*` folders under root."""
    if not root.exists():
        raise FileNotFoundError(
            f"no Omniglot data at {root}: point FEWSHOT_OMNIGLOT_DIR at a folder holding the "
            "official images_background.zip / images_evaluation.zip (or their extracted folders)"
        )
    found = sorted(p for p in root.iterdir() if p.name.startswith("images_"))
    found = [p for p in found if p.suffix == ".zip" or p.is_dir()]
    if not found:
        raise FileNotFoundError(f"no images_*.zip archive or images_* folder in {root}")
    return found


def load_omniglot(root: Path, cache_dir: Path | None = None) -> OmniglotImages:
    """Read every character under root, resized to 28x28; cached as npz when cache_dir is set."""
    sources = find_archives(root)
    cache = _cache_path(sources, cache_dir) if cache_dir else None
    if cache is not None and cache.exists():
        with np.load(cache) as data:
            pixels, names = data["pixels"], [str(n) for n in data["names"]]
    else:
        pixels, names = _read_sources(sources)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp.npz")
            np.savez_compressed(tmp, pixels=pixels, names=np.array(names))
            tmp.replace(cache)
    images = torch.from_numpy(pixels.astype(np.float32) / 255.0)
    return OmniglotImages(images, [n.split("/")[0] for n in names], names)


def _cache_path(sources: list[Path], cache_dir: Path) -> Path:
    digest = hashlib.sha256()
    for src in sources:
        stat = src.stat()
        digest.update(f"{src.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return cache_dir / f"omniglot-{OMNIGLOT_FORMAT.size}-{digest.hexdigest()[:16]}.npz"


def _read_sources(sources: list[Path]) -> tuple[np.ndarray, list[str]]:
    by_character: dict[str, dict[str, np.ndarray]] = {}
    for src in sources:
        for rel, read in _iter_pngs(src):
            parts = rel.split("/")
            if len(parts) < 3:
                continue
            alphabet, character, filename = parts[-3], parts[-2], parts[-1]
            drawings = by_character.setdefault(f"{alphabet}/{character}", {})
            if filename not in drawings:
                with Image.open(io.BytesIO(read())) as image:
                    drawings[filename] = image_to_array(image, OMNIGLOT_FORMAT)
    names = sorted(by_character)
    complete = [n for n in names if len(by_character[n]) == DRAWINGS_PER_CHARACTER]
    if len(complete) < len(names):
        log.warning("skipped %d characters without 20 drawings", len(names) - len(complete))
    if not complete:
        raise ValueError(f"no Omniglot characters found in {', '.join(map(str, sources))}")
    pixels = np.stack(
        [np.stack([by_character[n][f] for f in sorted(by_character[n])]) for n in complete]
    )
    log.info("read %d Omniglot characters from %d sources", len(complete), len(sources))
    return pixels, complete


def _iter_pngs(src: Path):  # type: ignore[no-untyped-def]
    if src.suffix == ".zip":
        with zipfile.ZipFile(src) as archive:
            for name in archive.namelist():
                if name.endswith(".png"):
                    yield name, lambda name=name: archive.read(name)
    else:
        for path in sorted(src.rglob("*.png")):
            yield path.relative_to(src).as_posix(), path.read_bytes


def split_characters(
    data: OmniglotImages,
    by: Literal["character", "alphabet"] = "character",
    seed: int = 0,
    fractions: tuple[float, float] = (0.1, 0.25),
    min_size: int = 1,
) -> dict[Split, list[int]]:
    """Disjoint meta-train / meta-val / meta-test character indices, drawn from the seed.

    `fractions` are (val_fraction, test_fraction) of the characters; a fraction of 0 leaves its
    split empty, and every non-empty split gets at least `min_size` characters (SplitError when
    meta-train would be left fewer). By alphabet, whole alphabets go to one split, so test
    characters come from scripts the model never saw: a held-out split takes alphabets until it
    holds its share, but meta-train always keeps at least one alphabet.
    """
    val_fraction, test_fraction = fractions
    n = len(data.characters)
    if by == "character":
        return split_at_random(n, val_fraction, test_fraction, seed, min_size, unit="characters")
    alphabets = sorted(set(data.alphabets))
    held = [(split, frac) for split, frac in (("test", test_fraction), ("val", val_fraction)) if frac > 0]
    if len(alphabets) < 1 + len(held):
        raise SplitError(
            f"splitting by alphabet needs at least {1 + len(held)} alphabets, found {len(alphabets)}: "
            "set split_by to 'character'", "split_by",
        )
    order = [alphabets[i] for i in np.random.default_rng(seed).permutation(len(alphabets))]
    groups: dict[Split, list[str]] = {"test": [], "val": [], "train": []}
    for split, frac in held:  # whole alphabets until the split holds its share (and one task's worth)
        target = max(frac * n, min_size)
        while len(order) > 1 and (not groups[split] or _count(data, groups[split]) < target):
            groups[split].append(order.pop(0))
    groups["train"] = order
    splits = {s: [i for i, a in enumerate(data.alphabets) if a in names] for s, names in groups.items()}
    for split, frac in held:
        if len(splits[split]) < min_size:
            key = f"{split}_fraction"
            raise SplitError(
                f"{key} {frac:g} by alphabet gives meta-{split} {len(splits[split])} characters, fewer than the "
                f"{min_size} its n_way-class tasks need: raise {key} or lower n_way", key,
            )
    if len(splits["train"]) < min_size:
        key = "val_fraction" if val_fraction > test_fraction else "test_fraction"
        raise SplitError(
            f"val_fraction {val_fraction:g} and test_fraction {test_fraction:g} by alphabet leave meta-training "
            f"{len(splits['train'])} characters, fewer than {min_size}: lower n_way, val_fraction or test_fraction", key,
        )
    return splits


def _count(data: OmniglotImages, alphabets: list[str]) -> int:
    return sum(a in alphabets for a in data.alphabets)


@dataclass
class OmniglotTasks:
    """N-way K-shot episodes with Q queries per class, over one split's characters.

    With rotations, each character rotated by 0, 90, 180 and 270 degrees is a class of its own
    (as in the MAML and ProtoNet papers), within every split.
    """

    data: OmniglotImages
    splits: dict[Split, list[int]]
    n_way: int = 5
    k_shot: int = 1
    k_query: int = 15
    rotations: bool = False
    augment: bool = False  # a random affine map per image of the train split (models.augment)

    def __post_init__(self) -> None:
        if self.k_shot + self.k_query > DRAWINGS_PER_CHARACTER:
            raise ValueError(
                f"k_shot + k_query = {self.k_shot + self.k_query} exceeds the "
                f"{DRAWINGS_PER_CHARACTER} drawings of each Omniglot character"
            )
        for split, chars in self.splits.items():
            if chars and len(chars) * (4 if self.rotations else 1) < self.n_way:
                raise ValueError(f"split {split!r} has too few characters for {self.n_way}-way tasks")

    @property
    def spec(self) -> ProblemSpec:
        size = self.data.images.shape[-1]
        return ProblemSpec.of(ImageModality(1, size, OMNIGLOT_FORMAT.invert), "classification", n_way=self.n_way)

    def sample(self, split: Split, n_tasks: int, generator: torch.Generator) -> list[Episode]:
        if not self.splits.get(split):
            raise ValueError(f"this Omniglot task family has no characters in split {split!r} (its fraction is 0)")
        return [self._episode(split, generator) for _ in range(n_tasks)]

    def split_names(self) -> SplitNames:
        """Each split's characters as "<Alphabet>/<characterNN>" (with rotations, each also rotated
        by 90, 180 and 270 degrees is a class of the same split)."""
        return SplitNames.of("classes", self.splits, self.data.characters)

    def supervised_batch(self, size: int, generator: torch.Generator) -> SupervisedBatch:
        """`size` random drawings of the train split labelled by global class id (character,
        times 4 rotations when on): the pretraining data of the fine-tuning baseline."""
        chars = self.splits["train"]
        n_classes = len(chars) * (4 if self.rotations else 1)
        classes = torch.randint(n_classes, (size,), generator=generator)  # [B]
        drawings = torch.randint(DRAWINGS_PER_CHARACTER, (size,), generator=generator)
        rots = classes % 4 if self.rotations else torch.zeros_like(classes)
        char_idx = torch.tensor(chars)[classes // 4 if self.rotations else classes]
        imgs = self.data.images[char_idx, drawings]  # [B, H, W]
        imgs = torch.stack([torch.rot90(img, int(r), dims=(0, 1)) for img, r in zip(imgs, rots, strict=True)]).unsqueeze(1)
        if self.augment:
            imgs = random_affine(imgs, generator)
        return SupervisedBatch(imgs, classes, n_classes)

    def _episode(self, split: Split, generator: torch.Generator) -> Episode:
        chars = self.splits[split]
        n_classes = len(chars) * (4 if self.rotations else 1)
        picked = torch.randperm(n_classes, generator=generator)[: self.n_way].tolist()
        shots = self.k_shot + self.k_query
        support, query = [], []
        for cls in picked:
            char, rot = (chars[cls // 4], cls % 4) if self.rotations else (chars[cls], 0)
            drawings = torch.randperm(DRAWINGS_PER_CHARACTER, generator=generator)[:shots]
            imgs = self.data.images[char, drawings]  # [shots, H, W]
            if rot:
                imgs = torch.rot90(imgs, rot, dims=(1, 2))
            support.append(imgs[: self.k_shot])
            query.append(imgs[self.k_shot :])
        labels = torch.arange(self.n_way)
        support_x, query_x = torch.cat(support).unsqueeze(1), torch.cat(query).unsqueeze(1)  # [N*K or N*Q, 1, H, W]
        if self.augment and split == "train":
            support_x, query_x = random_affine(support_x, generator), random_affine(query_x, generator)
        return Episode(
            support_x=support_x,
            support_y=labels.repeat_interleave(self.k_shot),
            query_x=query_x,
            query_y=labels.repeat_interleave(self.k_query),
        )
