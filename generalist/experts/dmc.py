"""Model-based controllers for dm_control tasks, reading the MuJoCo physics (privileged).

Cartpole swing-up: energy pumping, then LQR about upright (linearized from the MuJoCo model itself).
Reacher: Jacobian-transpose PD on the finger-to-target vector.
"""

from __future__ import annotations

import numpy as np

from generalist.envs.base import TaskEnv
from generalist.envs.rendering import configure_headless_gl
from generalist.experts.base import Policy

configure_headless_gl()  # mujoco picks its GL backend when imported

import mujoco  # noqa: E402


def _lqr_gain(A: np.ndarray, B: np.ndarray, Q: np.ndarray, R: np.ndarray, iters: int = 2000) -> np.ndarray:
    """Discrete-time infinite-horizon LQR gain K (u = -K x) by Riccati iteration."""
    P = Q.copy()
    for _ in range(iters):
        BtP = B.T @ P
        K = np.linalg.solve(R + BtP @ B, BtP @ A)
        P_next = Q + A.T @ P @ (A - B @ K)
        if np.allclose(P_next, P, rtol=1e-10, atol=1e-10):
            P = P_next
            break
        P = P_next
    BtP = B.T @ P
    return np.linalg.solve(R + BtP @ B, BtP @ A)


def _linearize(physics, qpos: np.ndarray, qvel: np.ndarray, n_sub_steps: int,
               eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) of one control step about (qpos, qvel, ctrl=0) by central differences of mj_step.

    Works with any integrator (cartpole uses RK4, which mjd_transitionFD does not support).
    """
    model = physics.model.ptr
    data = mujoco.MjData(model)
    nq, nu = model.nv, model.nu
    x0, u0 = np.concatenate([qpos, qvel]), np.zeros(nu)

    def step(x: np.ndarray, u: np.ndarray) -> np.ndarray:
        mujoco.mj_resetData(model, data)
        data.qpos[:], data.qvel[:], data.ctrl[:] = x[:nq], x[nq:], u
        for _ in range(n_sub_steps):
            mujoco.mj_step(model, data)
        return np.concatenate([data.qpos, data.qvel])

    A = np.zeros((2 * nq, 2 * nq))
    B = np.zeros((2 * nq, nu))
    for i in range(2 * nq):
        d = np.zeros(2 * nq)
        d[i] = eps
        A[:, i] = (step(x0 + d, u0) - step(x0 - d, u0)) / (2 * eps)
    for j in range(nu):
        d = np.zeros(nu)
        d[j] = eps
        B[:, j] = (step(x0, u0 + d) - step(x0, u0 - d)) / (2 * eps)
    return A, B


class CartpoleSwingupExpert(Policy):
    """Energy-based swing-up, cart kept near the centre, LQR catch and balance near upright."""

    def __init__(self, env: TaskEnv, seed: int | None = None, k_energy: float = -5.0,
                 q_x: float = 3.0, k_centre: float = 0.5, catch_cos: float = 0.7):
        super().__init__(env, seed)
        priv = self.privileged()
        physics, n_sub = priv["physics"], priv["n_sub_steps"]
        A, B = _linearize(physics, np.zeros(2), np.zeros(2), n_sub)
        self.K = _lqr_gain(A, B, np.diag([q_x, 20.0, 0.5, 1.0]), np.diag([0.1]))
        m = float(physics.named.model.body_mass["pole_1"])
        half = float(physics.named.model.geom_size["pole_1", 1])
        self.m_g_lc = m * 9.81 * half
        self.inertia = m * (2 * half) ** 2 / 3.0
        self.k_energy = k_energy
        self.k_centre = k_centre
        self.catch_cos = catch_cos

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        physics = self.privileged()["physics"]
        x, theta = physics.data.qpos
        v, omega = physics.data.qvel
        theta = (theta + np.pi) % (2 * np.pi) - np.pi  # 0 = upright
        if np.cos(theta) > self.catch_cos:
            u = -self.K @ np.array([x, theta, v, omega])
            return np.clip(u, -1, 1).astype(np.float32)
        energy = 0.5 * self.inertia * omega**2 + self.m_g_lc * (np.cos(theta) - 1.0)
        pump = self.k_energy * (0.0 - energy) * np.sign(omega * np.cos(theta) + 1e-9)
        centre = -self.k_centre * x - 0.3 * v
        return np.clip([pump + centre], -1, 1).astype(np.float32)


class ReacherExpert(Policy):
    """Resolved-rate control: joint step dq = J+ (target - finger) (damped least squares), then joint PD."""

    def __init__(self, env: TaskEnv, seed: int | None = None, kp: float = 20.0, kd: float = 1.0,
                 damping: float = 1e-3):
        super().__init__(env, seed)
        self.kp, self.kd, self.damping = kp, kd, damping

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        physics = self.privileged()["physics"]
        model, data = physics.model.ptr, physics.data.ptr
        jacp = np.zeros((3, model.nv))
        mujoco.mj_jacBody(model, data, jacp, None, physics.named.model.geom_bodyid["finger"])
        J = jacp[:2]
        err = physics.named.data.geom_xpos["target", :2] - physics.named.data.geom_xpos["finger", :2]
        dq = J.T @ np.linalg.solve(J @ J.T + self.damping * np.eye(2), err)
        torque = self.kp * dq - self.kd * physics.data.qvel
        return np.clip(torque, -1, 1).astype(np.float32)
