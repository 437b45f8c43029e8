"""Gato's tokenization (Reed et al. 2022, section 2.1), in numpy.

Vocabulary (one output head over it):
    [0, 1024)        discrete values (Atari and maze actions), their integer as is
    [1024, 2048)     continuous values: 1024 uniform bins over [-1, 1]
    2048             the separator between a timestep's observation and its action
Images are not tokens: they become non-overlapping patches (raster order) that the model embeds
with a ResNet block; their slots in the token stream hold PATCH_TOKEN.

A timestep is laid out as  [image patches] [state tokens] [separator] [action tokens];
`local_positions` number the slots inside each timestep (Gato's local position encodings).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_BINS = 1024
DISCRETE_OFFSET = 0
CONTINUOUS_OFFSET = 1024
SEPARATOR = 2048
VOCAB_SIZE = 2049
PATCH_TOKEN = -1  # slot filled by an image patch embedding, not a token embedding
# An action slot whose token the model is not shown (zero token embedding, position kept): used when a
# run hides past actions from the model (TrainConfig.hide_actions) against copycat behaviour cloning.
HIDDEN_TOKEN = -2
# Slots of the compact observation encoding (ObsEncoding "vector"): the whole state vector as one slot
# (a learned linear map of the normalized vector) and a whole image as one slot (a small conv encoder).
VECTOR_TOKEN = -3
FRAME_TOKEN = -4
OBS_ENCODINGS = ("tokens", "vector")
MU, M = 100.0, 256.0


def mu_law(x: np.ndarray, mu: float = MU, m: float = M) -> np.ndarray:
    """Gato's mu-law companding: sign(x) log(|x| mu + 1) / log(M mu + 1)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.log1p(np.abs(x) * mu) / np.log1p(m * mu)


def bin_values(x: np.ndarray) -> np.ndarray:
    """Values in [-1, 1] (clipped first) to bin indices 0..1023, uniform bins."""
    x = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
    return np.minimum(((x + 1.0) / 2.0 * N_BINS).astype(np.int64), N_BINS - 1)


def bin_centres(idx: np.ndarray) -> np.ndarray:
    """Bin indices 0..1023 to their centres in [-1, 1]."""
    return -1.0 + (np.asarray(idx, dtype=np.float64) + 0.5) * (2.0 / N_BINS)


def encode_continuous_observation(x: np.ndarray) -> np.ndarray:
    """Continuous observations: mu-law, clip to [-1, 1], 1024 bins, shifted into the continuous range."""
    return bin_values(mu_law(x)) + CONTINUOUS_OFFSET


def encode_continuous_action(a: np.ndarray) -> np.ndarray:
    """Continuous actions (already in [-1, 1]): 1024 bins, no companding."""
    return bin_values(a) + CONTINUOUS_OFFSET


def decode_continuous_action(tokens: np.ndarray) -> np.ndarray:
    """Tokens of the continuous range back to bin centres in [-1, 1]."""
    t = np.asarray(tokens)
    if ((t < CONTINUOUS_OFFSET) | (t >= CONTINUOUS_OFFSET + N_BINS)).any():
        raise ValueError("token outside the continuous range")
    return bin_centres(t - CONTINUOUS_OFFSET).astype(np.float32)


def encode_discrete(a: np.ndarray) -> np.ndarray:
    """Discrete values (actions): their integer, in the discrete range."""
    a = np.asarray(a, dtype=np.int64)
    if ((a < 0) | (a >= N_BINS)).any():
        raise ValueError("discrete value outside [0, 1024)")
    return a + DISCRETE_OFFSET


def image_to_patches(images: np.ndarray, patch: int = 16) -> np.ndarray:
    """uint8 (..., H, W, C) to float32 (..., n_patches, patch*patch*C) in raster order.

    Pixels go to [-1, 1] and are divided by sqrt(patch), as Gato does. H and W are zero-padded
    (pixel value 0 before scaling, i.e. black) up to a multiple of `patch`.
    """
    x = np.asarray(images)
    *lead, h, w, c = x.shape
    ph, pw = -h % patch, -w % patch
    if ph or pw:
        pad = [(0, 0)] * len(lead) + [(0, ph), (0, pw), (0, 0)]
        x = np.pad(x, pad)
    hh, ww = (h + ph) // patch, (w + pw) // patch
    x = x.reshape(*lead, hh, patch, ww, patch, c)
    x = np.moveaxis(x, -4, -3)  # (..., hh, ww, patch, patch, c)
    x = x.reshape(*lead, hh * ww, patch * patch * c)
    return ((x.astype(np.float32) / 255.0) * 2.0 - 1.0) / np.sqrt(patch)


@dataclass(frozen=True)
class TimestepLayout:
    """How many slots of each kind one timestep of a task takes."""

    n_patches: int
    n_state: int
    n_action: int
    patch_dim: int
    discrete_actions: int | None  # number of discrete actions, or None for continuous
    encoding: str = "tokens"      # "tokens" (Gato: a slot per patch / state value) or "vector" (a slot each)
    n_frames: int = 0             # "vector": one slot for the whole image
    state_size: int = 0           # values in the state vector (n_state counts slots)
    frame_stack: int = 1          # "vector": the frame slot stacks this many latest images as channels

    @property
    def length(self) -> int:
        return self.n_frames + self.n_patches + self.n_state + 1 + self.n_action

    @classmethod
    def for_spaces(cls, observation: dict[str, tuple], action_shape: tuple, discrete_n: int | None,
                   patch: int = 16, encoding: str = "tokens", frame_stack: int = 1) -> TimestepLayout:
        """observation: key -> shape ('image' (H, W, C) and/or 'state' (n,)). `frame_stack` K > 1 (the
        "vector" encoding, image tasks): a timestep's frame slot sees its last K images, as DQN's input."""
        if encoding not in OBS_ENCODINGS:
            raise ValueError(f"unknown observation encoding {encoding!r}; choose from {', '.join(OBS_ENCODINGS)}")
        n_patches = patch_dim = n_frames = 0
        if "image" in observation:
            h, w, c = observation["image"]
            if encoding == "vector":
                n_frames = 1
            else:
                n_patches = (-(-h // patch)) * (-(-w // patch))
                patch_dim = patch * patch * c
        state_size = int(np.prod(observation["state"])) if "state" in observation else 0
        n_state = state_size if encoding == "tokens" else int(state_size > 0)
        n_action = 1 if discrete_n is not None else int(np.prod(action_shape))
        return cls(n_patches, n_state, n_action, patch_dim, discrete_n, encoding, n_frames, state_size,
                   frame_stack if n_frames else 1)
