"""Speed-ups for memory-maze that leave every episode bit-identical to upstream.

Profiled (cProfile, 9x9, 64x64, one core): upstream spends ~2/3 of a step in
`TargetSphere._update_activation`, a Python loop over all MuJoCo contacts that runs for every target
after every physics substep (3 targets x 50 substeps per agent step), and ~20% of the rest building a
fresh `mujoco.MjvScene` for every rendered frame (`Physics.render` makes a new `Camera` each call).

* `patch_target_activation` answers "does any contact touch target i" for all targets at once, once
  per substep, from the contact array (same result, same side effect on the target's material).
* `patch_recompile` keeps one `Camera` per (size, camera) per compiled physics and reuses it (the
  scene is rebuilt by `mjv_updateScene` on every render exactly as before), and makes the per-reset
  recompile skip the ~73 of 88 texture assets no material uses (reset ~2.3 s -> ~1 s).

Measured with benchmarks/bench_maze.py: ~6x the steps/s of upstream. Rendering settings (shadows,
multisampling) are left as upstream has them: turning them off would be faster still on a CPU
renderer but would change the pixels, and the speed target is met without it.
tests/test_maze.py checks frames and rewards against upstream, image for image.
"""

from __future__ import annotations

import types
from typing import Any
from xml.etree import ElementTree

import numpy as np

from generalist.envs.rendering import configure_headless_gl

configure_headless_gl()  # dm_control picks its GL backend when imported: glfw (no display: abort) if unset

from dm_control import mjcf  # noqa: E402
from dm_control.locomotion.props import target_sphere  # noqa: E402
from dm_control.mujoco import engine  # noqa: E402


def unwrap(env: Any) -> Any:
    """The composer.Environment under memory-maze's dm_env wrapper chain."""
    while hasattr(env, "env"):
        env = env.env
    return env


# ------------------------------------------------------------------ target activation
def _update_activation_vectorized(self: target_sphere.TargetSphere, physics: Any) -> None:
    """`TargetSphere._update_activation` with numpy over the contact array instead of a Python loop."""
    if self._activated:
        return
    data = physics.data.ptr
    if data.ncon == 0:
        return
    geoms = data.contact.geom  # (ncon, 2): geom1, geom2 of every active contact
    hit = (geoms == self._geom_id).any(axis=1)
    ids = self._specific_collision_geom_ids
    if ids:
        hit &= np.isin(geoms, list(ids)).any(axis=1)
    if hit.any():
        self._activated = True
        physics.bind(self._material).rgba[-1] = 0


def _no_after_substep(self: Any, physics: Any, random_state: Any) -> None:
    """Done for this target by the first target's combined hook."""


def _make_combined_after_substep(targets: list[target_sphere.TargetSphere]) -> Any:
    def after_substep(self: Any, physics: Any, random_state: Any) -> None:
        """Activation of every target from one pass over the contacts (no target filters contacts)."""
        data = physics.data.ptr
        if data.ncon == 0:
            return
        touched = set(data.contact.geom.ravel().tolist())
        for t in targets:
            if not t._activated and t._geom_id in touched:
                t._activated = True
                physics.bind(t._material).rgba[-1] = 0

    return after_substep


def patch_target_activation(env: Any) -> int:
    """Swap every TargetSphere's contact loop for a vectorized check; return how many were patched.

    Only `after_substep` ordering among the targets' own hooks changes (all targets are checked in
    the first one's slot); nothing reads activation state between those hooks, so results are equal.
    The env must not recreate its targets per episode (upstream's `randomize_colors=False`).
    """
    core = unwrap(env)
    targets = [t for t in core.task._targets if type(t) is target_sphere.TargetSphere]
    for t in targets:
        t._update_activation = types.MethodType(_update_activation_vectorized, t)
    if targets and not any(t._specific_collision_geom_ids for t in targets):
        targets[0].after_substep = types.MethodType(_make_combined_after_substep(targets), targets[0])
        for t in targets[1:]:
            t.after_substep = types.MethodType(_no_after_substep, t)  # trivial: composer skips it
    core._hooks.refresh_entity_hooks()
    return len(targets)


# ------------------------------------------------------------------ camera reuse
def _cached_render(self: Any, height: int = 240, width: int = 320, camera_id: int | str = -1,
                   overlays: Any = (), depth: bool = False, segmentation: bool = False,
                   scene_option: Any = None, render_flag_overrides: Any = None,
                   scene_callback: Any = None) -> np.ndarray:
    """`Physics.render` that reuses one Camera (and its MjvScene) per (height, width, camera_id)."""
    if scene_callback is not None:
        return type(self).render(self, height, width, camera_id, overlays, depth, segmentation,
                                 scene_option, render_flag_overrides, scene_callback)
    key = (height, width, camera_id)
    camera = self._generalist_cameras.get(key)
    if camera is None:
        camera = engine.Camera(physics=self, height=height, width=width, camera_id=camera_id)
        self._generalist_cameras[key] = camera
    image = camera.render(overlays=overlays, depth=depth, segmentation=segmentation,
                          scene_option=scene_option, render_flag_overrides=render_flag_overrides)
    return image.copy()  # upstream hands out a fresh buffer per frame; keep that contract


def _free_with_cameras(self: Any) -> None:
    """`Physics.free` that also frees the cached cameras' scenes."""
    for camera in self._generalist_cameras.values():
        camera._scene.free()
    self._generalist_cameras.clear()
    type(self).free(self)


def _install_camera_cache(physics: Any) -> None:
    """Make `physics.render` reuse cameras (and free them with the physics)."""
    physics._generalist_cameras = {}
    physics.render = types.MethodType(_cached_render, physics)
    physics.free = types.MethodType(_free_with_cameras, physics)


def strip_unused_textures(xml: str) -> str:
    """The MJCF text without <texture> assets that no material (or the skybox) uses.

    Memory-maze's arena carries every wall texture of its style once per wall variation (88 textures,
    ~280 MB of pixels), of which an episode's materials use ~15. MuJoCo decodes and uploads all of
    them at every compile; unused ones can never appear in an image, so dropping them changes no pixel.
    """
    root = ElementTree.fromstring(xml)
    asset = root.find("asset")
    if asset is None:
        return xml
    used = set()
    for material in asset.findall("material"):
        used.add(material.get("texture"))
        used.update(layer.get("texture") for layer in material.findall("layer"))
    for texture in asset.findall("texture"):
        if texture.get("type") != "skybox" and texture.get("name") not in used:
            asset.remove(texture)
    return ElementTree.tostring(root, encoding="unicode")


def patch_recompile(env: Any, strip_textures: bool = True, cache_cameras: bool = True) -> None:
    """Replace composer's per-reset recompile with one that compiles only used textures and caches cameras.

    Upstream recompiles the MJCF model at every reset (the maze changes); this does the same compile
    from the same XML, minus texture assets no material references (see `strip_unused_textures`).
    (Render contexts cannot be carried over a recompile: MuJoCo's context holds per-model plane
    display lists and material tables, which change with every maze.)
    """
    core = unwrap(env)
    if cache_cameras:
        _install_camera_cache(core._physics)

    def _recompile_physics() -> None:
        old = getattr(core, "_physics", None)
        if old:
            old.free()
        model = core._task.root_entity.mjcf_model
        xml = model.to_xml_string()
        if strip_textures:
            xml = strip_unused_textures(xml)
        core._physics = mjcf.Physics.from_xml_string(xml_string=xml, assets=model.get_assets())
        core._physics.legacy_step = core._legacy_step
        if cache_cameras:
            _install_camera_cache(core._physics)

    core._recompile_physics = _recompile_physics


def apply_speedups(env: Any) -> None:
    """All identity-preserving speed-ups on a `memory_maze.tasks` env (in place)."""
    patch_target_activation(env)
    patch_recompile(env)
