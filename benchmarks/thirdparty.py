"""The libraries the benchmarks compare against: learn2learn's MAML and higher's innerloop_ctx.

learn2learn 0.2.0's `__init__` imports torchvision (and its `algorithms` package imports
pytorch-lightning wrappers); torchvision cannot be installed beside the CPU torch here. Its
MAML needs neither, so `learn2learn` and `learn2learn.algorithms` are registered as empty
package modules over the installed directories, and only `learn2learn.algorithms.maml` (with
the `learn2learn.utils` it imports) is executed. Install both with
benchmarks/install_thirdparty.sh.

    python benchmarks/thirdparty.py     # says what is installed
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

INSTALL_HINT = "install it with benchmarks/install_thirdparty.sh (it never touches torch)"


class NotInstalled(ImportError):
    """A compared library is missing; the message says how to install it."""


def learn2learn_maml() -> Any:
    """learn2learn's MAML class (learn2learn.algorithms.maml.MAML), imported without torchvision."""
    if "learn2learn.algorithms.maml" not in sys.modules:
        spec = importlib.util.find_spec("learn2learn")
        if spec is None or not spec.submodule_search_locations:
            raise NotInstalled(f"learn2learn is not installed: {INSTALL_HINT}")
        root = list(spec.submodule_search_locations)[0]
        for name, path in (("learn2learn", root), ("learn2learn.algorithms", f"{root}/algorithms")):
            if name not in sys.modules:
                package = types.ModuleType(name)
                package.__path__ = [path]
                sys.modules[name] = package
    return importlib.import_module("learn2learn.algorithms.maml").MAML


def higher_module() -> Any:
    """The `higher` package (innerloop_ctx)."""
    try:
        return importlib.import_module("higher")
    except ModuleNotFoundError as e:
        raise NotInstalled(f"higher is not installed: {INSTALL_HINT}") from e


class StandardBlock(nn.Module):
    """conv 3x3, nn.BatchNorm2d (batch statistics), ReLU, 2x2 max-pool: the Conv4 block as
    learn2learn's OmniglotCNN and higher's MAML example write it; our state names."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm2d(c_out, track_running_stats=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(F.relu(self.norm(self.conv(x))), 2)


def library_net(channels: int, n_way: int = 5) -> nn.Module:
    """Conv4 on 1x28x28 as a user of the libraries writes it; loads our Conv4's state dict."""
    from models.nets import Conv4

    net = Conv4(1, 28, n_way, channels)
    net.features = nn.Sequential(StandardBlock(1, channels), *[StandardBlock(channels, channels) for _ in range(3)])
    return net


LIBRARIES = {"learn2learn": learn2learn_maml, "higher": higher_module}


def available() -> dict[str, str | None]:
    """Each compared library and None when it imports, else why not."""
    found: dict[str, str | None] = {}
    for name, load in LIBRARIES.items():
        try:
            load()
            found[name] = None
        except NotInstalled as e:
            found[name] = str(e)
    return found


if __name__ == "__main__":
    for library, problem in available().items():
        print(f"{library}: {'ok' if problem is None else problem}")
