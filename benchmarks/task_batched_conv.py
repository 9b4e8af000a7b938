"""Can a burst's tasks share one convolution? Each layer of Conv4 for T tasks of 5 images, each
task with its own weights (as after the first inner step), forward and backward (the weight
gradient, and the input gradient where the layer's input has one), three ways on the CPU:

- loop: one channels-last convolution per task (what MAML.adapt_many runs on the CPU);
- grouped: the tasks' images side by side as channel groups, one convolution with groups=T
  (what vmap's batching rule for a convolution with per-task weights runs), NCHW and channels-last;
- bmm: im2col (F.unfold), one batched matrix product per pass, col2im (F.fold) for the input gradient.

If either batched form beat the loop, a burst's adaptations could share their passes; on these
cores it does not for the layers that cost (see benchmarks/RESULTS.md).

    python benchmarks/task_batched_conv.py            # T = 100, 1 thread
    python benchmarks/task_batched_conv.py --smoke
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from reporting import median_ms, setup, write_results

from workers.memory import keep_freed_memory

aten = torch.ops.aten
LAYERS = [(1, 28), (64, 14), (64, 7), (64, 3)]  # Conv4-64 on 28x28: (input channels, side) of each block's convolution


def layer_cases(tasks: int, images: int, c_in: int, side: int, c_out: int) -> dict[str, Callable[[], object]]:
    """The three ways, each a forward pass and convolution_backward of one layer for every task."""
    xs = [torch.randn(images, c_in, side, side) for _ in range(tasks)]
    ws = [torch.randn(c_out, c_in, 3, 3) for _ in range(tasks)]
    needs_input_grad = c_in > 1  # the first layer's input (the images) takes no gradient
    mask = [needs_input_grad, True, True]
    bias = torch.zeros(c_out)
    xs_cl = [x.contiguous(memory_format=torch.channels_last) for x in xs]
    ws_cl = [w.contiguous(memory_format=torch.channels_last) for w in ws]

    def loop() -> None:
        for x, w in zip(xs_cl, ws_cl, strict=True):
            z = F.conv2d(x, w, bias, padding=1)
            aten.convolution_backward(z, x, w, [c_out], [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)

    def grouped(layout: torch.memory_format) -> Callable[[], None]:
        x = torch.cat(xs, 1).contiguous(memory_format=layout)  # [images, T * c_in, side, side]
        w = torch.cat(ws, 0).contiguous(memory_format=layout)  # [T * c_out, c_in, 3, 3]
        b = torch.zeros(tasks * c_out)

        def run() -> None:
            z = F.conv2d(x, w, b, padding=1, groups=tasks)
            aten.convolution_backward(z, x, w, [tasks * c_out], [1, 1], [1, 1], [1, 1], False, [0, 0], tasks, mask)

        return run

    x_stacked = torch.stack(xs).flatten(0, 1)  # [T * images, c_in, side, side]
    w_stacked = torch.stack(ws).flatten(2)  # [T, c_out, c_in * 9]
    positions = images * side * side

    def bmm() -> None:
        cols = F.unfold(x_stacked, 3, padding=1).view(tasks, images, c_in * 9, side * side)
        cols = cols.transpose(1, 2).reshape(tasks, c_in * 9, positions)
        out = torch.bmm(w_stacked, cols)  # [T, c_out, positions]
        torch.bmm(out, cols.transpose(1, 2))  # weight gradient (the output standing in for its gradient)
        if needs_input_grad:
            d_cols = torch.bmm(w_stacked.transpose(1, 2), out).view(tasks, c_in * 9, images, side * side)
            F.fold(d_cols.transpose(1, 2).reshape(tasks * images, c_in * 9, side * side), (side, side), 3, padding=1)

    return {"loop": loop, "grouped NCHW": grouped(torch.contiguous_format),
            "grouped channels-last": grouped(torch.channels_last), "bmm": bmm}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=100)
    p.add_argument("--images", type=int, default=5, help="support images per task (5-way 1-shot)")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default="task_batched_conv")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    if args.smoke:
        args.tasks, args.repeats, args.name = 3, 2, "task_batched_conv-smoke"
    setup(args.threads)
    malloc_tuned = keep_freed_memory()
    rows = []
    for c_in, side in LAYERS:
        torch.manual_seed(0)
        ms = {way: median_ms(fn, args.repeats) for way, fn in layer_cases(args.tasks, args.images, c_in, side, 64).items()}
        rows.append({"layer": f"{c_in}->64 at {side}x{side}", "ms": {k: round(v, 2) for k, v in ms.items()}})
        print(rows[-1])
    ways = list(rows[0]["ms"])
    totals = {way: round(sum(r["ms"][way] for r in rows), 2) for way in ways}
    lines = [
        f"Conv4-64 layers, {args.tasks} tasks of {args.images} images each with their own weights, forward and "
        f"convolution_backward, {args.threads} thread(s), workers' malloc settings ({malloc_tuned}); medians of "
        f"{args.repeats} calls, ms for all tasks.",
        "",
        "| layer | " + " | ".join(ways) + " |",
        "|---|" + "---|" * len(ways),
        *[f"| {r['layer']} | " + " | ".join(f"{r['ms'][w]:.2f}" for w in ways) + " |" for r in rows],
        "| all four | " + " | ".join(f"**{totals[w]:.2f}**" for w in ways) + " |",
        "",
        "Against the loop: " + ", ".join(f"{w} {totals[w] / totals['loop']:.2f}x" for w in ways if w != "loop") + ".",
    ]
    write_results(args.name, {"settings": vars(args), "malloc_tuned": malloc_tuned, "rows": rows, "totals_ms": totals},
                  "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
