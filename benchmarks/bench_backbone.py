"""The backbone's costs: ms per 3 s patch (the ONNX Runtime engine genred runs, and the
PyTorch port batched or not, with the speed tricks), seconds to
train a head from stored embeddings (500 and 5,000 labels), and seconds to reclassify
100,000 tracks whose embeddings are stored.

    python benchmarks/bench_backbone.py [--quick]

Patches are random log-mel-like arrays (the network's cost does not depend on the
values); embeddings are drawn around 12 genre centres so the head has something to learn.
The head figures include reading the embeddings from an EmbeddingStore on disk.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common

N_LABELS = 12


def _max_min_select(self: Any, x: Any) -> Any:
    """FreqPooledBlock.forward before 7 Dec 2026: max and min over frequency, then a select."""
    import torch
    from torch.nn import functional as F

    y = self.conv(F.pad(x, self.pad))
    scale, shift = self.bn.scale_shift()
    positive = (scale >= 0).view(1, -1, 1)
    pooled = torch.where(positive, y.amax(dim=3), y.amin(dim=3))
    return torch.relu(pooled) * scale.view(1, -1, 1) + shift.view(1, -1, 1)


def _tf_order(self: Any, x: Any) -> Any:
    """ReLU + BN before the frequency max-pool (the original TF graph's order)."""
    import torch
    from torch.nn import functional as F

    return self.bn(torch.relu(self.conv(F.pad(x, self.pad)))).amax(dim=3)


def patch_ms(batch: int, patches: int, variant: str = "") -> float:
    """Median ms per patch of Musicnn.embed on ``patches`` patches in batches of
    ``batch``, on this process's torch threads; ``variant``: "max_min_select" or
    "tf_order" replace the front-end blocks' forward (see above)."""
    import torch

    from classifier.musicnn import FreqPooledBlock, load_backbone

    net = load_backbone()
    original = FreqPooledBlock.forward
    if variant:
        FreqPooledBlock.forward = {"max_min_select": _max_min_select,  # type: ignore[method-assign]
                                   "tf_order": _tf_order}[variant]
    x = torch.rand(patches, 187, 96) * 3
    times = []
    try:
        with torch.inference_mode():
            net.embed(x[:batch])
            for _ in range(3):
                t = time.perf_counter()
                for i in range(0, patches, batch):
                    net.embed(x[i : i + batch])
                times.append((time.perf_counter() - t) / patches * 1000)
    finally:
        FreqPooledBlock.forward = original  # type: ignore[method-assign]
    return common.median(times)


def engine_patch_ms(batch: int, patches: int, threads: int, full: bool = False) -> float:
    """Median ms per patch of the embedding engine (ONNX Runtime, classifier/musicnn_ort.py:
    what genred runs) on ``patches`` patches in batches of ``batch``; ``full``: the full
    graph, the filters proved never to fire included (what the engine runs on an input
    outside the proof's bound)."""
    import numpy as np

    from classifier.musicnn_ort import OrtBackbone

    engine = OrtBackbone(threads=threads)
    x = (np.random.default_rng(0).random((patches, 187, 96)) * 3).astype(np.float32)
    if full:
        engine.session = engine._session(prune=False)
    engine.embed(x[:batch])
    times = []
    for _ in range(3):
        t = time.perf_counter()
        for i in range(0, patches, batch):
            engine.embed(x[i : i + batch])
        times.append((time.perf_counter() - t) / patches * 1000)
    return common.median(times)


def head_seconds(n: int, store_root: Path) -> tuple[float, float]:
    """(seconds to read n stored embeddings, seconds to fit the head and temperature)."""
    import numpy as np
    import torch

    from classifier.embeddings import EmbeddingStore
    from classifier.head import BackboneHead
    from classifier.headfit import HeadData, fit_head, fit_temperature

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(N_LABELS, 753)).astype(np.float32)
    y = rng.integers(0, N_LABELS, n)
    x = centres[y] + 2.0 * rng.normal(size=(n, 753)).astype(np.float32)
    store = EmbeddingStore(store_root, f"bench{n}")
    for i in range(n):
        store.put(f"{i:064x}", x[i])
    t = time.perf_counter()
    read = np.stack([store.get(f"{i:064x}") for i in range(n)])  # type: ignore[misc]
    t_read = time.perf_counter() - t
    torch.manual_seed(0)
    net = BackboneHead(N_LABELS)
    cut = int(n * 0.85)
    t = time.perf_counter()
    fit_head(net, HeadData(read[:cut], y[:cut]))
    fit_temperature(net, HeadData(read[cut:], y[cut:]))
    return t_read, time.perf_counter() - t


def reclassify_seconds(n: int) -> float:
    import numpy as np
    import torch

    from classifier.head import BackboneHead

    net = BackboneHead(N_LABELS).eval()
    x = np.random.default_rng(1).normal(size=(n, 753)).astype(np.float16)
    t = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, n, 10_000):
            torch.softmax(net.calibrated(torch.from_numpy(x[i : i + 10_000].astype(np.float32))),
                          dim=1)
    return time.perf_counter() - t


def run(argv: list[str] | None = None) -> None:
    parser = common.base_parser(__doc__.splitlines()[0], default_tracks=0)
    args = parser.parse_args(argv)
    import torch

    from classifier.predict import set_torch_threads

    report = common.Report("backbone", {"quick": args.quick})
    report.header()
    patches = 12 if args.quick else 36
    # One thread: what each of a scan's decode processes runs (daemon/decoding.py).
    torch.set_num_threads(1)
    for batch in (1, 2, 6):
        report.result(f"engine_patch_ms_1thread_batch{batch}",
                      engine_patch_ms(batch, patches, 1), "ms/patch, one thread, ONNX Runtime")
    report.result("engine_patch_ms_1thread_batch1_full_graph",
                  engine_patch_ms(1, patches, 1, full=True),
                  "ms/patch, one thread, ONNX Runtime, no filter left out")
    for batch in (1, 2, 6, 12):
        report.result(f"patch_ms_1thread_batch{batch}", patch_ms(batch, patches),
                      "ms/patch, one thread, the PyTorch port")
    report.result("patch_ms_1thread_batch2_max_min_select",
                  patch_ms(2, patches, "max_min_select"),
                  "ms/patch, one thread (the front end's pooling before 7 Dec 2026)")
    report.result("patch_ms_1thread_batch2_relu_bn_before_pool",
                  patch_ms(2, patches, "tf_order"), "ms/patch, one thread (the TF order)")
    set_torch_threads()  # training's embed_songs runs the backbone on these
    threads = torch.get_num_threads()
    report.result("engine_patch_ms_batch2", engine_patch_ms(2, patches, threads),
                  f"ms/patch, {threads} threads, ONNX Runtime")
    for batch in (2, 6, 12 if args.quick else 36):
        report.result(f"patch_ms_batch{batch}", patch_ms(batch, patches),
                      f"ms/patch, {threads} threads, the PyTorch port")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (100, 200) if args.quick else (500, 5000):
            t_read, t_fit = head_seconds(n, Path(tmp))
            report.result(f"head_{n}_labels_read_seconds", t_read, "s")
            report.result(f"head_{n}_labels_fit_seconds", t_fit, "s")
    n = 10_000 if args.quick else 100_000
    report.result(f"reclassify_{n}_stored_seconds", reclassify_seconds(n), "s")
    report.finish(args.json)


if __name__ == "__main__":
    sys.exit(common.main_guard(run))
