"""Gato's tokenization, with the numbers pinned."""

from __future__ import annotations

import numpy as np
import pytest

from generalist.agent import tokenizer as tk
from generalist.agent.data import action_balance_weights, encode_window
from generalist.agent.encoder import ObsNorm, TimestepEncoder


def test_mu_law_pinned_values():
    # sign(x) * ln(|x|*100 + 1) / ln(256*100 + 1)
    assert tk.mu_law(0.0) == 0.0
    assert np.isclose(tk.mu_law(1.0), np.log(101) / np.log(25601))        # 0.454674...
    assert np.isclose(tk.mu_law(1.0), 0.4546744, atol=1e-6)
    assert np.isclose(tk.mu_law(-256.0), -1.0)
    assert np.isclose(tk.mu_law(0.01), np.log(2) / np.log(25601))
    assert tk.mu_law(1e6) > 1.0  # beyond M it exceeds 1: the clip happens at binning


def test_bins_pinned():
    np.testing.assert_array_equal(tk.bin_values([-1.0, -0.999, 0.0, 0.5, 1.0, 7.0, -7.0]),
                                  [0, 0, 512, 768, 1023, 1023, 0])
    assert tk.bin_values(-1 + 2 / 1024) == 1  # bin edges every 2/1024
    np.testing.assert_allclose(tk.bin_centres([0, 511, 512, 1023]),
                               [-1 + 1 / 1024, -1 / 1024, 1 / 1024, 1 - 1 / 1024])


def test_continuous_observation_tokens():
    x = np.array([0.0, 1.0, -1.0, 1000.0, -1000.0])
    expected = tk.bin_values(np.clip(tk.mu_law(x), -1, 1)) + 1024
    np.testing.assert_array_equal(tk.encode_continuous_observation(x), expected)
    np.testing.assert_array_equal(tk.encode_continuous_observation([1000.0, -1000.0]), [2047, 1024])
    assert tk.encode_continuous_observation(1.0) == 1024 + int((0.4546744 + 1) / 2 * 1024)  # 1768


def test_continuous_action_round_trip_to_bin_centres():
    a = np.array([-1.0, -0.3, 0.0, 0.25, 1.0], dtype=np.float32)
    tokens = tk.encode_continuous_action(a)
    assert tokens.min() >= 1024 and tokens.max() <= 2047
    back = tk.decode_continuous_action(tokens)
    assert np.abs(back - a).max() <= 1 / 1024 + 1e-7  # within half a bin (bin width 2/1024)
    np.testing.assert_allclose(back, tk.bin_centres(tk.bin_values(a)).astype(np.float32))
    with pytest.raises(ValueError):
        tk.decode_continuous_action(np.array([5]))


def test_discrete_range():
    np.testing.assert_array_equal(tk.encode_discrete(np.array([0, 3, 5])), [0, 3, 5])
    with pytest.raises(ValueError):
        tk.encode_discrete(np.array([1024]))


def test_patches_raster_order_and_scaling():
    img = np.zeros((32, 48, 1), np.uint8)
    img[:16, 16:32] = 255  # patch (row 0, col 1) is white
    p = tk.image_to_patches(img, patch=16)
    assert p.shape == (6, 256)
    assert np.allclose(p[1], (1.0) / 4.0)           # white -> 1 / sqrt(16)
    assert np.allclose(p[0], -1.0 / 4.0)            # black -> -1 / sqrt(16)
    # 84x84 is padded to 96x96: 36 patches; a pixel keeps its place inside its patch
    img = np.arange(84 * 84 * 3, dtype=np.int64).reshape(84, 84, 3) % 256
    q = tk.image_to_patches(img.astype(np.uint8), patch=16)
    assert q.shape == (36, 768)
    r, c = 37, 50  # patch (2, 3), offset (5, 2)
    expected = ((img[r, c, 1] / 255.0) * 2 - 1) / 4.0
    assert np.isclose(q[2 * 6 + 3].reshape(16, 16, 3)[5, 2, 1], expected)


def test_layout_and_tokenize_continuous():
    layout = tk.TimestepLayout.for_spaces({"state": (3,)}, (2,), None)
    assert (layout.n_patches, layout.n_state, layout.n_action, layout.length) == (0, 3, 2, 6)
    obs = {"state": np.array([[0.0, 1.0, -1.0], [2.0, 0.0, 0.0]], np.float32)}
    acts = np.array([[0.0, 1.0], [-1.0, 0.5]], np.float32)
    w = TimestepEncoder(layout).encode(obs, acts)
    assert w.tokens.tolist()[:6] == [1536, 1768, 1303, 2048, 1536, 2047]
    assert w.local.tolist() == [0, 1, 2, 3, 4, 5] * 2
    assert w.loss_mask.tolist() == [False, False, False, False, True, True] * 2
    assert w.patches.size == 0 and w.vectors.size == 0
    prefix = TimestepEncoder(layout).encode(obs, acts[:1])  # acting: the last step stops at its separator
    assert prefix.tokens.tolist() == w.tokens.tolist()[:10] and prefix.loss_mask.sum() == 2


def test_tokenize_image_and_discrete():
    layout = tk.TimestepLayout.for_spaces({"image": (64, 64, 3)}, (), 6)
    assert layout.n_patches == 16 and layout.length == 18 and layout.patch_dim == 768
    obs = {"image": np.zeros((3, 64, 64, 3), np.uint8)}
    w = TimestepEncoder(layout).encode(obs, np.array([0, 5, 2]))
    assert w.tokens.shape == (54,) and w.patches.shape == (48, 3, 16, 16)
    assert (w.tokens.reshape(3, 18)[:, :16] == tk.PATCH_TOKEN).all()
    assert w.tokens.reshape(3, 18)[:, 16:].tolist() == [[2048, 0], [2048, 5], [2048, 2]]
    assert w.loss_mask.sum() == 3


def test_vector_encoding_one_slot_per_state_and_image():
    lay = tk.TimestepLayout.for_spaces({"state": (3,)}, (2,), None, encoding="vector")
    assert (lay.n_state, lay.state_size, lay.length) == (1, 3, 4)
    norm = ObsNorm.fit(np.array([[0.0, 1.0, 5.0], [2.0, 3.0, 5.0]]), "zscore")
    assert norm.mean == (1.0, 2.0, 5.0) and norm.std == (1.0, 1.0, 1.0)  # a constant dimension keeps std 1
    enc = TimestepEncoder(lay, norm, state_dim=8)
    w = enc.encode({"state": np.array([[2.0, 1.0, 5.0]])}, np.array([[0.0, 1.0]]))
    assert w.tokens.tolist() == [tk.VECTOR_TOKEN, 2048, 1536, 2047]
    np.testing.assert_allclose(w.vectors, [[1.0, -1.0, 0.0, 0, 0, 0, 0, 0]])
    img = tk.TimestepLayout.for_spaces({"image": (84, 84, 1)}, (), 6, encoding="vector")
    assert (img.n_frames, img.n_patches, img.length) == (1, 0, 3)
    frames = TimestepEncoder(img, frame_size=96).encode({"image": np.full((2, 84, 84, 1), 7, np.uint8)},
                                                        np.array([1, 2])).frames
    assert frames.shape == (2, 3, 96, 96) and (frames[:, :, :84, :84] == 7).all() and frames[:, :, 84:].sum() == 0


def test_frame_stack_channels_hold_the_latest_images():
    """--frame-stack K: timestep t's frame holds images t-K+1..t (oldest first), the earliest known image
    repeated before an episode's start; K x C channels tiled to the model's frame channels."""
    lay = tk.TimestepLayout.for_spaces({"image": (4, 4, 1)}, (), 3, encoding="vector", frame_stack=3)
    assert lay.frame_stack == 3 and lay.length == 3
    images = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((5, 4, 4, 1), np.uint8)  # image i is all i
    enc = TimestepEncoder(lay, frame_size=4, frame_channels=4)
    assert enc.past_frames == 2
    first = enc.encode({"image": images[:3]}, np.zeros(3, int)).frames[:, :, 0, 0]
    assert first.tolist() == [[0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 2, 0]]  # 3 channels tiled to 4
    later = enc.encode({"image": images[3:]}, np.zeros(2, int), past_images=images[:3]).frames[:, :, 0, 0]
    assert later.tolist() == [[1, 2, 3, 1], [2, 3, 4, 2]]
    one_known = enc.encode({"image": images[3:4]}, None, past_images=images[2:3]).frames[:, :, 0, 0]
    assert one_known.tolist() == [[2, 2, 3, 2]]
    rgb = tk.TimestepLayout.for_spaces({"image": (4, 4, 3)}, (), 3, encoding="vector")  # no stack: channels tiled
    frames = TimestepEncoder(rgb, frame_size=4, frame_channels=4).encode(
        {"image": np.arange(3, dtype=np.uint8) * np.ones((1, 4, 4, 3), np.uint8)}, None).frames
    assert frames[0, :, 0, 0].tolist() == [0, 1, 2, 0]


def test_action_balance_weights():
    w = action_balance_weights(np.array([6, 2, 0]), 1.0)  # equal total weight per action, mean 1 over the data
    assert set(w) == {0, 1} and np.isclose(w[0] * 6, w[1] * 2) and np.isclose((w[0] * 6 + w[1] * 2) / 8, 1)
    assert action_balance_weights(np.array([6, 2]), 0.0) == {0: 1.0, 1: 1.0}


def test_loss_weights_per_token_or_per_timestep():
    """--loss-unit timestep: a timestep's action tokens share weight 1 (4 Meta-World dimensions weigh
    what cartpole's one does); balance weights multiply either."""
    rng = np.random.default_rng(0)
    lay = tk.TimestepLayout.for_spaces({"state": (39,)}, (4,), None, encoding="vector")
    window = {"task": "t", "observations": {"state": rng.normal(size=(3, 39)).astype(np.float32)},
              "actions": rng.uniform(-1, 1, (3, 4)).astype(np.float32)}
    enc = TimestepEncoder(lay)
    per_token = encode_window(window, enc)
    per_step = encode_window(window, enc, per_timestep=True)
    mask = per_token.inputs.loss_mask
    assert per_token.loss_weight[mask].sum() == pytest.approx(12) and per_step.loss_weight[mask].sum() == pytest.approx(3)
    disc = tk.TimestepLayout.for_spaces({"state": (5,)}, (), 3, encoding="vector")
    w = {"task": "d", "observations": {"state": np.zeros((4, 5), np.float32)}, "actions": np.array([0, 1, 1, 2])}
    s = encode_window(w, TimestepEncoder(disc), {1: 2.0}, per_timestep=True)
    np.testing.assert_allclose(s.loss_weight[s.inputs.loss_mask], [1, 2, 2, 1])
