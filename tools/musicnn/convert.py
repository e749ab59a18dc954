"""Convert MSD_musicnn's TF-1 checkpoint to safetensors and record the original's outputs.

Dev-only; runs in its own venv with tools/musicnn/requirements.txt (TensorFlow, librosa,
resampy), never in genred's::

    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install -r tools/musicnn/requirements.txt
    pip download --no-deps musicnn==0.1.0 -d /tmp/musicnn && unzip -q -o \\
        /tmp/musicnn/musicnn-0.1.0-py3-none-any.whl -d /tmp/musicnn/wheel
    /tmp/tfvenv/bin/python tools/musicnn/convert.py /tmp/musicnn/wheel \\
        --reference /tmp/musicnn-ref.npz AUDIO_FILE...
    .venv/bin/python tools/musicnn/prove.py /tmp/musicnn-ref.npz     # genred's venv

1. Reads ``musicnn/MSD_musicnn/`` (the checkpoint) and writes
   ``classifier/backbones/msd_musicnn.safetensors`` under the names of
   classifier/musicnn.py's module (kernels transposed to torch's layouts).
2. For each AUDIO_FILE, runs the ORIGINAL pipeline — PyAV decode at the native rate,
   channel mean, ``librosa.resample(res_type="kaiser_best")`` (resampy), librosa's mel
   spectrogram with librosa 0.7's reflect padding, log10(1 + 10000 x) in float32,
   non-overlapping 187-frame patches, the TF graph from ``musicnn.models`` with the
   checkpoint restored — and stores the waveform at 16 kHz, the patches, the taggram and
   the embeddings per file in an .npz (plain arrays; read with allow_pickle=False).
   prove.py runs genred's own front end and port on the same files and compares.
3. ``--ci-reference DIR``: the same for the first AUDIO_FILE, trimmed to its first two
   patches, written as the small reference tests/classifier/test_musicnn.py checks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "classifier" / "backbones" / "msd_musicnn.safetensors"
SR, N_FFT, HOP, N_MELS, FRAMES = 16000, 512, 256, 96, 187

BN = {  # TF layer -> module path in classifier/musicnn.py
    "batch_normalization": "input_bn",
    "batch_normalization_1": "timbral.0.bn", "batch_normalization_2": "timbral.1.bn",
    "batch_normalization_3": "temporal.0.bn", "batch_normalization_4": "temporal.1.bn",
    "batch_normalization_5": "temporal.2.bn",
    "batch_normalization_6": "midend.0.bn", "batch_normalization_7": "midend.1.bn",
    "batch_normalization_8": "midend.2.bn",
    "batch_normalization_9": "pool_bn", "batch_normalization_10": "dense_bn",
}
CONV2D = {"conv2d": "timbral.0.conv", "conv2d_1": "timbral.1.conv",
          "conv2d_2": "temporal.0.conv", "conv2d_3": "temporal.1.conv",
          "conv2d_4": "temporal.2.conv"}
CONV1D = {"conv2d_5": "midend.0.conv", "conv2d_6": "midend.1.conv", "conv2d_7": "midend.2.conv"}
DENSE = {"dense": "dense", "dense_1": "out"}


def convert(checkpoint: str) -> dict[str, np.ndarray]:
    import tensorflow as tf

    reader = tf.compat.v1.train.NewCheckpointReader(checkpoint)
    get = reader.get_tensor
    state: dict[str, np.ndarray] = {}
    for tf_name, name in BN.items():
        for tf_key, key in (("gamma", "gamma"), ("beta", "beta"),
                            ("moving_mean", "mean"), ("moving_variance", "var")):
            state[f"{name}.{key}"] = get(f"{tf_name}/{tf_key}")
    for tf_name, name in CONV2D.items():  # (kh, kw, in, out) -> (out, in, kh, kw)
        state[f"{name}.weight"] = get(f"{tf_name}/kernel").transpose(3, 2, 0, 1)
        state[f"{name}.bias"] = get(f"{tf_name}/bias")
    for tf_name, name in CONV1D.items():  # (7, width, 1, out) -> (out, width, 7)
        state[f"{name}.weight"] = get(f"{tf_name}/kernel")[:, :, 0, :].transpose(2, 1, 0)
        state[f"{name}.bias"] = get(f"{tf_name}/bias")
    for tf_name, name in DENSE.items():  # (in, out) -> (out, in)
        state[f"{name}.weight"] = get(f"{tf_name}/kernel").T
        state[f"{name}.bias"] = get(f"{tf_name}/bias")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}


def decode_native(path: Path) -> tuple[np.ndarray, int]:
    """The whole file at its native rate, channels averaged (what librosa.load does before
    resampling), decoded by PyAV as genred decodes it."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp")
        frames = []
        for frame in container.decode(stream):
            frames.extend(resampler.resample(frame))
        frames.extend(resampler.resample(None))
    y = np.concatenate([f.to_ndarray() for f in frames], axis=1).astype(np.float32)
    return y.mean(axis=0, dtype=np.float32), int(frames[0].sample_rate)


def front_end(y: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """(16 kHz waveform, (P, 187, 96) patches) as musicnn's extractor makes them."""
    import librosa

    y16 = librosa.resample(y, orig_sr=sr, target_sr=SR, res_type="kaiser_best")
    mel = librosa.feature.melspectrogram(y=y16, sr=SR, hop_length=HOP, n_fft=N_FFT,
                                         n_mels=N_MELS, pad_mode="reflect").T
    rep = np.log10(10000 * mel.astype(np.float32) + 1)
    n = rep.shape[0] // FRAMES
    return y16.astype(np.float32), rep[: n * FRAMES].reshape(n, FRAMES, N_MELS)


class Original:
    """The TF graph of musicnn.models with the checkpoint restored."""

    def __init__(self, wheel: Path) -> None:
        import tensorflow as tf

        sys.path.insert(0, str(wheel))
        from musicnn import models

        tf.compat.v1.disable_eager_execution()
        tf.compat.v1.reset_default_graph()
        with tf.name_scope("model"):
            self.x = tf.compat.v1.placeholder(tf.float32, [None, FRAMES, N_MELS])
            self.training = tf.compat.v1.placeholder(tf.bool)
            y, _, _, _, _, _, mean_pool, max_pool, penultimate = models.define_model(
                self.x, self.training, "MSD_musicnn", 50)
            self.outputs = {"taggram": tf.nn.sigmoid(y), "mean_pool": mean_pool,
                            "max_pool": max_pool, "penultimate": penultimate}
        self.sess = tf.compat.v1.Session()
        self.sess.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.train.Saver().restore(self.sess, str(wheel / "musicnn" / "MSD_musicnn") + "/")

    def __call__(self, patches: np.ndarray) -> dict[str, np.ndarray]:
        out = self.sess.run(self.outputs, feed_dict={self.x: patches, self.training: False})
        return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wheel", type=Path, help="the unpacked musicnn 0.1.0 wheel")
    ap.add_argument("audio", nargs="*", type=Path, help="real audio files for the proof")
    ap.add_argument("--reference", type=Path, help="write the original's outputs here (.npz)")
    ap.add_argument("--ci-reference", type=Path, help="write the small CI reference here")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    from safetensors.numpy import save_file

    state = convert(str(args.wheel / "musicnn" / "MSD_musicnn") + "/")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.out))
    args.out.chmod(0o644)  # safetensors creates it 0600
    n_weights = sum(v.size for v in state.values())
    print(f"wrote {args.out} ({len(state)} tensors, {n_weights} values)")
    if not args.audio:
        return 0
    original = Original(args.wheel)
    arrays: dict[str, np.ndarray] = {}
    for i, path in enumerate(args.audio):
        y, sr = decode_native(path)
        y16, patches = front_end(y, sr)
        out = original(patches)
        arrays[f"{i}/path"] = np.array(str(path))
        arrays[f"{i}/wave16k"] = y16
        arrays[f"{i}/patches"] = patches
        for k, v in out.items():
            arrays[f"{i}/{k}"] = v
        print(f"{path.name}: {sr} Hz, {patches.shape[0]} patches")
    if args.reference:
        np.savez_compressed(args.reference, **arrays)
        print(f"wrote {args.reference}")
    if args.ci_reference:
        write_ci_reference(args.ci_reference, args.audio[0], original)
    return 0


def write_ci_reference(directory: Path, audio: Path, original: Original) -> None:
    """The first two patches of ``audio`` and the original network's outputs on them."""
    y, sr = decode_native(audio)
    _, patches = front_end(y, sr)
    patches = patches[:2]
    out = original(patches)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(directory / "expected.npz", patches=patches, **out)
    print(f"wrote {directory / 'expected.npz'} from {audio.name}")


if __name__ == "__main__":
    raise SystemExit(main())
