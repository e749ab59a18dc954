"""What genred knows of MSD_musicnn without torch: where its weights are, its input and
embedding sizes, its tags. The network itself is classifier/musicnn.py (PyTorch, the
proved port) and classifier/musicnn_ort.py (ONNX Runtime, the engine a scan runs); the
decode processes import only this and the engine.
"""

from __future__ import annotations

from pathlib import Path

BACKBONE_DIR = Path(__file__).resolve().parent / "backbones"
MSD_MUSICNN = "msd_musicnn"
WEIGHTS = {MSD_MUSICNN: BACKBONE_DIR / "msd_musicnn.safetensors"}
PATCH_FRAMES = 187
N_MELS = 96
BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default
EMBEDDING_DIM = 753  # mean over time of the mid-end's dense-connected feature map

MSD_TAGS = [
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
    "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s",
    "chill", "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic",
    "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock",
    "60s", "rnb", "indie pop", "sad", "House", "happy",
]
