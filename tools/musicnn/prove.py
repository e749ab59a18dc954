"""Compare genred's MSD_musicnn (front end + PyTorch port) with the original's outputs.

Runs in genred's venv on the .npz that convert.py wrote (``--reference``)::

    .venv/bin/python tools/musicnn/prove.py /tmp/musicnn-ref.npz

For each file it reports the max abs difference of (a) the 16 kHz waveform (genred's
decode + classifier.resample vs PyAV + resampy), (b) the log-mel patches, (c) the tags and
embeddings of the port on the ORIGINAL patches (the port alone) and (d) of genred's whole
pipeline (everything genred does differently). Exit status 1 when (d) exceeds 1e-3.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from classifier import audio
from classifier.features import log_mel, musicnn_params, patches

KEYS = ("taggram", "mean_pool", "max_pool", "penultimate")
LIMIT = 1e-3


def genred_front_end(path: str) -> tuple[np.ndarray, np.ndarray]:
    params = musicnn_params()
    info = audio.probe(path)
    seconds = info.duration + 1.0
    track = audio.read_track(path, 1, seconds, params.sample_rate, starts=[0.0],
                             resampler="kaiser_best")
    y = track.clips[0]
    return y, patches(log_mel(y, params))


def main() -> int:
    import torch

    from classifier.musicnn import load_backbone

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reference", type=Path)
    args = ap.parse_args()
    ref = np.load(args.reference, allow_pickle=False)
    net = load_backbone()
    worst = 0.0
    n = len({k.split("/")[0] for k in ref.files})
    for i in range(n):
        path = str(ref[f"{i}/path"])
        want = {k: ref[f"{i}/{k}"] for k in KEYS}
        y, ours = genred_front_end(path)
        y_ref = ref[f"{i}/wave16k"]
        m = min(y.size, y_ref.size)
        wave = float(np.abs(y[:m] - y_ref[:m]).max())
        p_ref = ref[f"{i}/patches"]
        k = min(len(ours), len(p_ref))
        mel = float(np.abs(ours[:k] - p_ref[:k]).max())
        with torch.inference_mode():
            port = net.features(torch.from_numpy(p_ref))
            full = net.features(torch.from_numpy(ours[:k]))
        d_port = {key: float((port[key].numpy() - want[key]).__abs__().max()) for key in KEYS}
        d_full = {key: float(np.abs(full[key].numpy() - want[key][:k]).max()) for key in KEYS}
        worst = max(worst, *d_full.values())
        print(f"{Path(path).name}: {k} patches; wave {wave:.1e}, log-mel {mel:.1e}")
        print("  port on the original patches: "
              + ", ".join(f"{key} {v:.1e}" for key, v in d_port.items()))
        print("  genred's whole pipeline:      "
              + ", ".join(f"{key} {v:.1e}" for key, v in d_full.items()))
    print(f"worst difference of genred's pipeline: {worst:.1e} (limit {LIMIT:g})")
    return 0 if worst <= LIMIT else 1


if __name__ == "__main__":
    raise SystemExit(main())
