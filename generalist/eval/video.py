"""Episode videos for reports: the agent and the expert on the same seed, side by side, as a GIF.

GIF (Pillow, no ffmpeg) because it embeds in a self-contained HTML page and plays everywhere
offline. Videos show the first `max_steps` steps of an episode: the expert's rollout is cut
there too, which is what keeps it cheap for the slow experts (Atari look-ahead).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from generalist import envs
from generalist.episodes import PolicyFactory

HEIGHT = 128  # every panel is scaled (nearest neighbour) to this height


def record(task: str, policy: PolicyFactory, seed: int, max_frames: int = 250,
           stride: int | None = None) -> tuple[list[np.ndarray], float]:
    """Rendered RGB frames (every `stride`-th step, at most `max_frames`) of one episode's start,
    and the return collected over the recorded stretch. The stride defaults to the domain's
    `Display.video_stride`, so that a ~250-frame video covers a meaningful stretch of its episode."""
    display = envs.get_task(task).display
    stride = stride or display.video_stride
    sized = {"render_size": HEIGHT} if display.sized_render else {}
    env = envs.make(task, render_mode="rgb_array", **sized)
    try:
        obs, _ = env.reset(seed=seed)
        pol = policy(env, seed)
        pol.reset()
        frames, ret, step = [np.asarray(env.render())], 0.0, 0
        while len(frames) < max_frames:
            obs, reward, terminated, truncated, _ = env.step(pol.act(obs))
            ret += float(reward)
            step += 1
            if step % stride == 0 or terminated or truncated:
                frames.append(np.asarray(env.render()))
            if terminated or truncated:
                break
        return frames, ret
    finally:
        env.close()


def _fit(frame: np.ndarray, height: int) -> np.ndarray:
    """RGB uint8 at `height` rows (integer-ish nearest-neighbour scaling keeps pixel art crisp)."""
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    h, w = frame.shape[:2]
    width = max(1, round(w * height / h))
    rows = (np.arange(height) * h // height).clip(0, h - 1)
    cols = (np.arange(width) * w // width).clip(0, w - 1)
    return frame[rows][:, cols].astype(np.uint8)


def side_by_side(*streams: list[np.ndarray], height: int = HEIGHT, gap: int = 4) -> list[np.ndarray]:
    """One frame list, panels left to right; a stream that ended keeps showing its last frame."""
    n = max(len(s) for s in streams)
    out = []
    for i in range(n):
        panels = [_fit(s[min(i, len(s) - 1)], height) for s in streams]
        sep = np.full((height, gap, 3), 255, np.uint8)
        row = [panels[0]]
        for p in panels[1:]:
            row += [sep, p]
        out.append(np.concatenate(row, axis=1))
    return out


def write_gif(frames: list[np.ndarray], path: Path, fps: int = 15) -> Path:
    """Write an animated GIF atomically (temporary name, then rename)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # one shared palette and no dithering: rendered 3D scenes compress ~5x better than per-frame dithered GIFs
    sample = np.concatenate(frames[:: max(1, len(frames) // 8)], axis=0)
    palette = Image.fromarray(sample).quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    tmp = path.with_name(path.name + ".part")
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps),
                   loop=0, optimize=False)
    tmp.replace(path)
    return path
