"""MNIST from the IDX files, its N-way K-shot tasks, and supervised batches of global classes."""

from __future__ import annotations

import gzip

import pytest
import torch

from models.mnist import MnistTasks, load_mnist
from models.omniglot import OmniglotTasks, load_omniglot, split_characters
from models.recipe import DataSources, build_tasks, resolve
from tests.conftest import DATASETS

MNIST = DATASETS / "mnist"


@pytest.fixture(scope="module")
def mnist() -> tuple[torch.Tensor, torch.Tensor]:
    return load_mnist(MNIST)


def test_load_mnist_reads_the_idx_files(mnist):
    images, labels = mnist
    assert images.shape == (10_000, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (10_000,) and labels.dtype == torch.int64
    assert 0.0 == float(images.min()) and float(images.max()) == 1.0
    assert torch.bincount(labels).tolist()[:2] == [980, 1135]  # the t10k set's class counts


def test_a_file_of_the_wrong_kind_is_refused_with_a_reason(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress((MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes((MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(ValueError, match="not an IDX file"):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="FEWSHOT_MNIST_DIR"):
        load_mnist(tmp_path / "absent")


def test_mnist_episodes_draw_from_their_split_only(mnist):
    images, labels = mnist
    tasks = MnistTasks(images, labels, n_way=3, k_shot=2, k_query=4)
    g = torch.Generator().manual_seed(0)
    for split, digits in (("train", {0, 1, 2, 3, 4}), ("test", {5, 6, 7, 8, 9})):
        for ep in tasks.sample(split, 5, g):
            assert ep.support_x.shape == (6, 1, 28, 28) and ep.query_x.shape == (12, 1, 28, 28)
            for x in ep.support_x:  # every image is one of the split's digits
                match = (images == x[0]).flatten(1).all(1).nonzero().flatten()
                assert {int(labels[i]) for i in match} <= digits
    with pytest.raises(ValueError, match="no digits"):
        tasks.sample("val", 1, g)
    with pytest.raises(ValueError, match="overlap"):
        MnistTasks(images, labels, splits={"train": [1, 2, 3, 4, 5], "test": [5, 6, 7, 8, 9]})


def test_mnist_as_a_meta_test_family_and_as_a_job_dataset(mnist, tmp_path):
    images, labels = mnist
    family = MnistTasks.meta_test_family(images, labels, n_way=10, k_shot=1, k_query=2)
    ep = family.sample("test", 1, torch.Generator().manual_seed(0))[0]
    assert ep.support_y.tolist() == list(range(10)) and family.spec.modality.name == "image" and not family.spec.modality.invert
    recipe = resolve("protonet", "mnist", {"n_way": 5})
    tasks = build_tasks(recipe, DataSources(tmp_path, mnist_dir=MNIST))
    assert isinstance(tasks, MnistTasks) and tasks.spec.n_way == 5
    batch = tasks.supervised_batch(32, torch.Generator().manual_seed(0))
    assert batch.n_classes == 5 and batch.x.shape == (32, 1, 28, 28) and int(batch.y.max()) < 5


def test_omniglot_supervised_batches_label_by_global_class(omniglot_dir, dataset_cache):
    data = load_omniglot(omniglot_dir, dataset_cache)
    splits = split_characters(data, by="alphabet", seed=0)
    tasks = OmniglotTasks(data, splits, rotations=True)
    batch = tasks.supervised_batch(64, torch.Generator().manual_seed(0))
    assert batch.n_classes == 4 * len(splits["train"])
    for x, y in zip(batch.x, batch.y.tolist(), strict=True):
        char, rot = splits["train"][y // 4], y % 4
        drawings = torch.rot90(data.images[char], rot, dims=(1, 2))  # [20, 28, 28]
        assert (drawings == x[0]).flatten(1).all(1).any(), (y, char, rot)
