"""Named training recipes: the shipped models' whole pipeline as data, run by ``megaviewer-train recipe``.

Why recipes are data: the command line, ``scripts/train_default.py`` and the metrics a shipped model
records must describe the same run; one frozen dataclass per recipe, looked up by name (timm-style
presets), keeps them from drifting. A recipe is a chain of stages -- tokenizer, mesh pool, self-supervised
pre-training, keypoint-conditioned training and its warm restarts, keypoint lifter, decoder fine-tune,
evaluation; the stages a recipe leaves at 0 steps are skipped -- each resumable on its own
(:mod:`training.loop`), so a run of many hours can stop and continue on another machine from the state
that :mod:`training.state` saves.

``seconds_per_step`` are wall-clock figures measured on a 2-core CPU with the stage's real code; they only
serve the up-front estimate of how long a recipe takes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from megaviewer.tokenizer.model import TokenizerConfig
from training.decoder import DecoderTrainConfig
from training.tokenizer import TokenizerTrainConfig


@dataclass(frozen=True)
class TokenizerStage:
    steps: int
    batch_size: int
    lr: float
    channels: tuple[int, ...]
    residual_scale: float  # 0: absolute coordinates; > 0: offsets from the rest template x this
    extremity_density: float = 1.0  # > 1: more tokens on the hands and feet (TokenizerConfig.extremity_density)
    extremity_weight: float = 1.0  # > 1: the hands and feet weigh more in the loss (TokenizerTrainConfig)
    tokens: int = TokenizerConfig().num_tokens  # tokens per mesh: the size of the hierarchy's coarsest level
    prior: str = "motion"  # training.data.priors.PRIOR_KINDS
    warmup_steps: int = 200
    ckpt_every: int = 1000
    chunk_size: int = 4096  # meshes posed per chunk (training.data.meshes.ChunkedMeshStream); 0: per step
    seconds_per_step: float = 0.16

    def train_config(self, out_dir: str, threads: int = 0) -> TokenizerTrainConfig:
        return TokenizerTrainConfig(out_dir=out_dir, steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                                    warmup_steps=self.warmup_steps, ckpt_every=self.ckpt_every,
                                    threads=threads, prior=self.prior, chunk_size=self.chunk_size,
                                    extremity_weight=self.extremity_weight,
                                    tokenizer=TokenizerConfig(level_sizes=[*TokenizerConfig().level_sizes[:-1],
                                                                           self.tokens],
                                                              channels=list(self.channels),
                                                              residual_scale=self.residual_scale,
                                                              extremity_density=self.extremity_density))


@dataclass(frozen=True)
class DecoderStage:
    """The tokenizer's decoder fine-tuned with extra weight on the hands and feet (:mod:`training.decoder`).
    Token ids do not change, so it runs after the MEGA stages and the evaluation decodes through its result."""

    steps: int
    batch_size: int = 32
    lr: float = 1e-3
    extremity_weight: float = 8.0
    warmup_steps: int = 100
    ckpt_every: int = 1000
    seconds_per_step: float = 0.13

    def train_config(self, out_dir: str, init: str, threads: int = 0) -> DecoderTrainConfig:
        return DecoderTrainConfig(out_dir=out_dir, init=init, steps=self.steps, batch_size=self.batch_size,
                                  lr=self.lr, warmup_steps=self.warmup_steps,
                                  extremity_weight=self.extremity_weight, ckpt_every=self.ckpt_every,
                                  threads=threads)


@dataclass(frozen=True)
class MegaStage:
    preset: str = "cpu_fast"
    pool_size: int = 50_000
    pool_prior: str = "motion"
    pretrain_steps: int = 1_500
    train_steps: int = 5_400
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 200
    masking: str = "cosine_full"
    reprojection_rows: int | None = 16
    code_smoothing: float = 0.0  # training.mega_losses.code_neighbour_targets
    lifting: float = 0.0  # weight of training.mega_losses.lifting_loss (presets with a keypoint read-out)
    fresh_lr_scale: float = 1.0  # learning rate of the tensors pre-training lacks (ConditionedConfig.fresh_lr_scale)
    landmarks: bool = False  # also condition on the detector's 3D landmarks (simulated: training.data.landmark_noise)
    gross_2d_errors: bool = False  # keypoint outliers as the real detector makes them (observations.GROSS_2D_ERRORS)
    # A warm restart after the conditioned stage (0 steps: none), from its final weights at ``tail_lr`` with
    # landmarks for only ``tail_landmark_prob`` of the people: a landmark model trained with them for 80 % of
    # the people leans on them, and this teaches it to read the keypoints alone as well.
    tail_steps: int = 0
    tail_lr: float = 5e-4
    tail_warmup_steps: int = 100
    tail_landmark_prob: float = 0.5
    # Then a keypoint lifter (megaviewer.model.lifter; 0 steps: none) trained on the same simulated detector, and
    # a second warm restart with it frozen inside the model: people without landmarks read the lifter's 3D
    # joints instead of nothing, so the model answers keypoints alone nearly as well as keypoints + landmarks.
    lifter_steps: int = 0
    lifter_batch_size: int = 256
    lifter_lr: float = 1e-3
    lifted_steps: int = 0
    lifted_lr: float = 5e-4
    lifted_landmark_prob: float = 0.5
    # A third warm restart (0 steps: none), from the second's final weights with the same data: each restart so
    # far lowered the benchmark error, on a budget of minutes rather than a longer single run. ``polish_rounds``
    # repeats it, each round from the previous round's final weights with its own data seed (round r: seed r - 1),
    # at a fraction of a millimetre per round (training.run_recipe.continue_polish adds rounds to an installed model).
    polish_steps: int = 0
    polish_lr: float = 5e-4
    polish_rounds: int = 1
    lifter_seconds_per_step: float = 0.084
    ckpt_every: int = 500
    pool_seconds_per_mesh: float = 0.0025
    pretrain_seconds_per_step: float = 0.28
    train_seconds_per_step: float = 0.34


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    tokenizer: TokenizerStage
    mega: MegaStage = field(default_factory=MegaStage)
    decoder: DecoderStage | None = None
    # the benchmark scored for the network alone (2.5 min) and as the engine returns it, each hypothesis fitted
    # to the keypoints (12.3 min for the shipped default on one torch thread)
    eval_minutes: float = 9.0

    def estimated_minutes(self) -> dict[str, float]:
        """Each stage's expected wall-clock minutes on a 2-core CPU (from the measured per-step figures)."""
        t, m = self.tokenizer, self.mega
        return {"tokenizer": t.steps * t.seconds_per_step / 60,
                "pool": m.pool_size * m.pool_seconds_per_mesh / 60,
                "pretrain": m.pretrain_steps * m.pretrain_seconds_per_step / 60,
                "conditioned": m.train_steps * m.train_seconds_per_step / 60,
                **({"warm restart": m.tail_steps * m.train_seconds_per_step / 60} if m.tail_steps else {}),
                **({"lifter": m.lifter_steps * m.lifter_seconds_per_step / 60} if m.lifter_steps else {}),
                **({"warm restart with the lifter": m.lifted_steps * m.train_seconds_per_step / 60}
                   if m.lifted_steps else {}),
                **({"third warm restart": m.polish_steps * m.train_seconds_per_step / 60} if m.polish_steps else {}),
                **({"further warm restarts": (m.polish_rounds - 1) * m.polish_steps * m.train_seconds_per_step / 60}
                   if m.polish_steps and m.polish_rounds > 1 else {}),
                **({"decoder": self.decoder.steps * self.decoder.seconds_per_step / 60} if self.decoder else {}),
                "evaluation": self.eval_minutes}

    def estimated_hours(self) -> float:
        return sum(self.estimated_minutes().values()) / 60

    def to_dict(self) -> dict:
        return asdict(self)


RECIPES: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    if recipe.name in RECIPES:
        raise ValueError(f"recipe {recipe.name!r} already registered")
    RECIPES[recipe.name] = recipe
    return recipe


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; available: {sorted(RECIPES)}")
    return RECIPES[name]


# The shipped models: a long tokenizer run on offsets from the template (sharp hands and feet) that spends its tokens
# where the error was: its three coarse levels three times as dense on the hands and feet as an even spread would
# make them, 64 tokens instead of 54, and the hand and foot vertices weighing twice as much in its loss (the encoder
# and the codebook learn to spend their bits there, not only the decoder); then MEGA on the key poses mixed with real
# motion, reading keypoints and the detector's 3D landmarks, trained on the detector's measured gross 2D errors for
# 8,400 steps, a 6,000-step warm restart with landmarks for half the people, a second one of 6,000 steps with a
# keypoint lifter answering for the landmarks of the other half, and a third with the same data, repeated in six
# rounds, each from the previous round's weights (rounds 2 to 6 were added to the installed model with
# ``megaviewer-train polish``, on a machine where a step took 0.53-0.65 s instead of this recipe's 0.25: 4.8 hours);
# last, the tokenizer's decoder is sharpened on the hands and feet with every token id unchanged (the shipped decoder
# was sharpened after round 1, and rounds 2 to 6 decoded their 2D loss through it: the same token ids). The per-step
# figures are this recipe's own run on 2 torch threads.
# How the tokenizer was chosen: 12,000-step probes (batch 16, density 3, motion prior, 1,024 held-out key-pose
# meshes, mm): hand/foot vertex p95 36.7 with 54 tokens and weight 1, 30.8 with weight 2 (PVE 10.7 against 11.2),
# 33.7 with weight 4 (PVE 12.4: too much), 32.6 with 64 tokens (PVE 10.6, PA-MPJPE 8.4 against 8.9). A decoder made
# wider (32, 64, 128) on the previous tokens did not lower the p95 (16.3 against 16.2): the tokens, not the decoder,
# were what limited the fingers and toes.
register(Recipe(
    name="default",
    summary="the shipped default: tokenizer on offsets, 64 tokens three times as dense on the hands and feet, key "
            "poses + real motion, landmarks, long CPU run",
    tokenizer=TokenizerStage(steps=100_000, batch_size=16, lr=6e-3, channels=(16, 32, 64), residual_scale=5.0,
                             extremity_density=3.0, extremity_weight=2.0, tokens=64, seconds_per_step=0.097),
    mega=MegaStage(landmarks=True, gross_2d_errors=True, train_steps=8_400, tail_steps=6_000, lifter_steps=10_000,
                   lifted_steps=6_000, polish_steps=6_000, polish_rounds=6, pretrain_seconds_per_step=0.18,
                   train_seconds_per_step=0.25, lifter_seconds_per_step=0.035),
    decoder=DecoderStage(steps=24_000),
))

# The previous default (resources/baselines/dense_model): 54 tokens, the coarse levels twice as dense on the hands
# and feet, an unweighted loss; the same MEGA stages and decoder fine-tune. Tokenizers trained from scratch with
# density 2 and with an even spread for 15,000 steps: hand/foot p95 31.3 against 34.1 mm at a PVE under 1 % higher.
register(Recipe(
    name="dense_extremities",
    summary="the previous default: 54 tokens, twice as dense on the hands and feet",
    tokenizer=replace(RECIPES["default"].tokenizer, extremity_density=2.0, extremity_weight=1.0,
                      tokens=TokenizerConfig().num_tokens, seconds_per_step=0.105),
    mega=replace(RECIPES["default"].mega, pretrain_seconds_per_step=0.28, train_seconds_per_step=0.36,
                 lifter_seconds_per_step=0.036),
    decoder=RECIPES["default"].decoder,
))

# The previous default with the token grid spread evenly over the body: the recipe of
# resources/baselines/offsets_model. On the full schedule (1,024 held-out meshes of the motion prior, mm), after the
# decoder fine-tune: hand/foot vertex p95 16.8 against dense_extremities' 16.2, PVE 5.66 against 5.59; MEGA's
# benchmark PA-MPJPE 54.1 against 53.1 (scripts/compare_models.py measures them side by side).
register(Recipe(
    name="even_extremities",
    summary="the dense_extremities recipe with the tokens spread evenly over the body",
    tokenizer=replace(RECIPES["dense_extremities"].tokenizer, extremity_density=1.0),
    mega=RECIPES["dense_extremities"].mega,
    decoder=RECIPES["dense_extremities"].decoder,
))

# At most 90 minutes on a 2-core CPU, for people who want a model fast.
register(Recipe(
    name="quick",
    summary="a model in about 80 minutes on a 2-core CPU",
    tokenizer=TokenizerStage(steps=8_000, batch_size=16, lr=6e-3, channels=(16, 32, 64), residual_scale=5.0),
    mega=MegaStage(pool_size=30_000, pretrain_steps=1_000, train_steps=4_000),
))

# The recipe of the previous release of the shipped files, about 82 minutes on a 2-core CPU: the tokenizer on
# absolute coordinates and everything on the authored key poses only. Kept as the reference point of the
# training-speed comparison (``scripts/bench_training.py``) and the ablation rows.
register(Recipe(
    name="baseline",
    summary="82-minute recipe: absolute-coordinate tokenizer, key poses only",
    tokenizer=TokenizerStage(steps=12_000, batch_size=16, lr=1e-3, channels=(16, 32, 64), residual_scale=0.0,
                             prior="keyposes", chunk_size=0, seconds_per_step=0.2),
    mega=MegaStage(pool_prior="keyposes"),
))

# The baseline with its tokenizer on offsets from the template: the downstream check of the tokenizer sweep
# (resources/tokenizer/sweep.json), MEGA trained with the baseline budget on the sharper tokenizer's tokens.
register(Recipe(
    name="baseline_offsets",
    summary="the baseline recipe with the tokenizer on offsets from the template (x5, lr 6e-3)",
    tokenizer=replace(RECIPES["baseline"].tokenizer, lr=6e-3, residual_scale=5.0),
    mega=RECIPES["baseline"].mega,
))
