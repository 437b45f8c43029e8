"""The training and model configurations: one home for every training option and model size. Torch-free,
so the CLI builds `generalist train`'s flags from `TrainConfig` without importing torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from generalist.agent.encoder import OBS_NORMS
from generalist.agent.tokenizer import OBS_ENCODINGS, VOCAB_SIZE
from generalist.flags import option

ACTION_LOSSES = ("ce", "hlgauss")
FRAME_NORMS = ("scale", "center")
INPUT_ENCODERS = ("shared", "per-shape")
LOSS_UNITS = ("token", "timestep")
KEEP_LAST = 3  # checkpoints kept by default (the newest ones)
WANDB_MODES = ("off", "offline", "online")


@dataclass
class ModelConfig:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 192
    vocab_size: int = VOCAB_SIZE
    max_local_positions: int = 128   # slots per timestep
    max_patch_grid: int = 16         # patches per image side (16 x 16 patches of 16 px = 256 px)
    patch_size: int = 16
    patch_channels: int = 3          # grayscale patches are repeated to 3 channels
    dropout: float = 0.0
    max_seq_len: int = 1024          # context, in slots (for the KV cache and checks)
    state_dim: int = 64              # "vector" encoding: state vectors are zero-padded to this size
    frame_size: int = 84             # "vector" encoding: images are zero-padded to frame_size x frame_size
    frame_channels: int = 3          # "vector" encoding: the frame encoder's input channels (frame stack x image channels)
    frame_norm: str = "scale"        # "vector" encoding: pixels scaled to [-1, 1], or "center": minus the dataset's mean frame
    n_tasks: int = 0                 # task embeddings (`--task-embedding`): one learned vector per task; 0: none, as Gato
    # `--input-encoders per-shape`: for each task (in task order) the index of its state projection and of its
    # frame encoder (tasks whose observations have the same shape share one); empty: one of each, shared by all.
    state_encoders: list[int] = field(default_factory=list)
    frame_encoders: list[int] = field(default_factory=list)
    # What `generalist train --help` says of a named size; not part of the model (left out of to_dict).
    note: str = field(default="", compare=False, repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        del d["note"]
        return d


# The model sizes `generalist train --config` offers, in this order: adding a line here adds a size.
SIZES: dict[str, ModelConfig] = {
    "tiny": ModelConfig(n_layer=4, n_head=4, n_embd=192, note="~3M, CPU"),
    "small": ModelConfig(n_layer=8, n_head=8, n_embd=512, note="~28M"),
    "base": ModelConfig(n_layer=12, n_head=12, n_embd=768, note="~89M, Gato's smallest"),
}


@dataclass
class TrainConfig:
    """Defaults train `tiny` on a laptop CPU in minutes. Every `option` field is a `generalist train` flag
    of the same name (generalist/flags.py) with the default and help written here."""

    data: list[str] = option(default_factory=list, required=True,
                             help="dataset roots (as written by `collect --out`)")
    out: str = option("runs/default", required=True, help="run directory: checkpoints, W&B files")
    config: str = option("tiny", choices=SIZES, help="model size: " + ", ".join(
        f"{name} ({size.note})" if size.note else name for name, size in SIZES.items()))
    steps: int = option(2000, help="optimizer steps")
    batch: int = option(16, help="global batch in windows (split across ranks)")
    context: int = option(1024, help="context length in tokens (slots)")
    lr: float = option(1e-3, help="peak learning rate (AdamW)")
    min_lr_ratio: float = 0.1
    warmup: int = option(100, help="warm-up steps before cosine decay")
    weight_decay: float = 0.1
    grad_clip: float = option(1.0, help="clip the global gradient norm to this (0: no clipping)")
    prompt_prob: float = option(0.25, help="share of windows that start with a prompt from another episode "
                                           "(Gato: 0.25)")
    val_fraction: float = 0.1
    eval_every: int = option(200, help="validation loss every N steps")
    val_batches: int = 2             # per task
    ckpt_every: int = option(500, help="checkpoint every N steps (and at the end)")
    keep_last: int = option(KEEP_LAST, metavar="K",
                            help=f"keep only the newest K checkpoints (default {KEEP_LAST}; 0 keeps all)")
    workers: int = option(0, help="DataLoader worker processes per rank")
    seed: int = option(0, help="seed for init and data order")
    compile: bool = option(False, help="torch.compile the model")
    wandb: str = option("off", choices=WANDB_MODES,
                        help="log to Weights & Biases (offline never uses the network)")
    task_weights: dict[str, float] | None = option(None, metavar="TASK=W", example="atari-pong=2",
                                                   help="sampling weights (default: balanced)")
    # Hide every action token from the model's input (it still predicts them): with long smooth
    # action sequences and little data, a model that sees past actions learns to repeat them
    # (copycat) and never changes action when acting. Off by default, as in Gato.
    hide_actions: bool = option(False, help="never show action tokens to the model (it still predicts them): "
                                            "against copycat cloning")
    # How an observation becomes slots (DEVELOPERS.md has the measurements).
    obs_encoding: str = option("tokens", choices=OBS_ENCODINGS,
                               help="tokens: Gato's (a slot per image patch and per state value); vector: one "
                                    "slot per image (conv encoder) and one per state vector (linear map)")
    obs_norm: str = option("zscore", choices=OBS_NORMS,
                           help="vector encoding: scale states by per-task dataset statistics (zscore) or mu-law")
    max_timesteps: int = option(0, help="timesteps per window and in the acting context (the agent's memory); "
                                        "0: fill --context")
    task_timesteps: dict[str, int] | None = option(
        None, metavar="TASK=K", example="dmc-cartpole-swingup=1",
        help="per-task memory overriding --max-timesteps (e.g. state tasks 1, pixel tasks more)")
    # Pong's ball velocity and the paddle's coasting are visible in consecutive frames (DQN stacks 4).
    frame_stack: dict[str, int] | None = option(
        None, metavar="TASK=K", example="atari-pong=4",
        help="vector encoding: a pixel task's frame slot stacks its last K images as channels (one conv pass "
             "sees motion; default 1)")
    # A Pong frame is a static court with a few moving pixels: scaled as they are, the conv's response to the court
    # is ~99% of a frame embedding (DEVELOPERS.md), and the ball and paddles are a rounding error after LayerNorm.
    frame_norm: str = option("scale", choices=FRAME_NORMS,
                             help="vector encoding: scale pixels to [-1, 1] (scale), or subtract each task's mean "
                                  "training frame first (center: the static background becomes 0)")
    # Continuous action tokens: a near miss costs less than a far one under hlgauss.
    action_loss: str = option("ce", choices=ACTION_LOSSES,
                              help="continuous actions: ce (Gato: the right bin) or hlgauss (Gaussian over "
                                   "nearby bins)")
    hl_sigma: float = option(8.0, help="hlgauss: the Gaussian's width in bins (of 1024)")
    # Pong's expert waits 87.5% of the time; a plain clone learns to always wait.
    balance_actions: float = option(0.0, metavar="ALPHA",
                                    help="discrete tasks: weigh each action's loss by its frequency^-ALPHA "
                                         "(0: plain cloning; 1: every action weighs the same in total)")
    # "token" lets a 4-dimensional Meta-World action weigh 4x a cartpole one.
    loss_unit: str = option("token", choices=LOSS_UNITS,
                            help="token (Gato): every action token counts once; timestep: a timestep's action "
                                 "tokens share weight 1, so tasks with many action dimensions do not dominate")
    # Gato infers the task from the observations, or reads it from a prompt.
    task_embedding: bool = option(False, help="add a learned embedding of the window's task to every slot "
                                              "(the model need not infer the task)")
    # Pong's grayscale frames and the maze's RGB ones share one conv stack under "shared", where the maze's
    # gradients are ~30x Pong's (DEVELOPERS.md, "Task gradient balance").
    input_encoders: str = option("shared", choices=INPUT_ENCODERS,
                                 help="vector encoding: shared (one state projection and one conv frame encoder "
                                      "for all tasks) or per-shape (one for each distinct state size and image "
                                      "shape; tasks with the same observation shape still share)")
    # Measured on the shared blocks by agent/balance.py.
    balance_tasks: float = option(0.0, metavar="ALPHA",
                                  help="scale each task's loss by (its gradient norm on the shared layers / the "
                                       "mean)^-ALPHA, re-measured every 25 steps (0: off; 1: every task moves "
                                       "the shared weights alike)")
    # Polyak averaging of the weights (as diffusion-policy and many BC recipes do): the saved checkpoint, validation
    # and acting use the average; the optimizer's own weights stay in train_state.pt for --resume.
    ema: float = option(0.0, metavar="DECAY",
                        help="keep an exponential moving average of the weights with this decay (e.g. 0.999) and act "
                             "with it (0: off, act with the last weights)")
