"""The names every room of memsweep shares, and what each room needs to know of them.

One entry per architecture, corruption kind and data set, plus the `Corruption(kind, p)` type
that every spec family parses its corruptions into. Plain Python only (no torch, no Ray, no
pandas): the spec validates against it, the trainables build from it and the analysis colours
its figures from it, and none of them has to import another to learn a name. Tests hold the
models, the spec and the figures to these lists (tests/test_catalog.py).
"""

from __future__ import annotations

from dataclasses import dataclass

# Colour-blind-safe hues (Okabe & Ito 2008), used for architectures and corruption kinds alike.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


def _by_name(*entries):
    """A table of catalog entries by their name, in the order given."""
    return {e.name: e for e in entries}


@dataclass(frozen=True)
class Arch:
    """An architecture of `trainables.models`.

    lr: default SGD learning rate. Zhang et al. 2017 (Sec. A of the appendix): 0.01 for the
        MLPs and the small AlexNet, 0.1 for Inception and WideResNet; Arpit et al. 2017's CNN:
        0.01. inception_nobn: 0.01, because without batch norm SGD at 0.1 diverges to NaN within
        60 steps on a digits batch (measured, He-initialized), while 0.01 fits it.
    conv: convolutional (its first-layer filters can be probed; packs through torch.func).
    params: parameter count on the paper's input (CIFAR-10, 10 classes; Zhang et al. crop to
        3x28x28 and list 1,209,866 / 1,735,178 / 1,387,786 / 1,649,402 in their Table 1 for
        mlp1 / mlp3 / alexnet / inception without BN; the Arpit CNN and WRN are input-size free).
    colour: its colour in every figure.
    """

    name: str
    lr: float
    conv: bool
    params: int
    colour: str


ARCHITECTURES: dict[str, Arch] = _by_name(
    Arch("mlp1", 0.01, False, 1_209_866, "#56B4E9"),
    Arch("mlp3", 0.01, False, 1_735_178, "#0072B2"),
    Arch("alexnet", 0.01, True, 1_387_786, "#E69F00"),
    Arch("inception", 0.1, True, 1_652_826, "#009E73"),
    Arch("inception_nobn", 0.01, True, 1_649_402, "#D55E00"),
    Arch("wrn", 0.1, True, 369_498, "#CC79A7"),
    Arch("cnn", 0.01, True, 2_322_386, "#000000"),
)
ARCHS = tuple(ARCHITECTURES)
DEFAULT_LR = {a.name: a.lr for a in ARCHITECTURES.values()}
PAPER_INPUT = (3, 28, 28)  # the input `Arch.params` is counted on


@dataclass(frozen=True)
class Kind:
    """A corruption kind of `trainables.corruption` (Zhang et al. 2017, Sec. 2; Arpit et al. 2017).

    leveled: takes a fraction p of the training examples ('randY:0.3'); the others are all or nothing.
    images: changes the training images (so models on it cannot share a pack's inputs with the
        true-image kinds); otherwise it changes only labels (or nothing, for 'real').
    """

    name: str
    leveled: bool
    images: bool
    colour: str


KIND_TABLE: dict[str, Kind] = _by_name(
    Kind("real", False, False, "#0072B2"),  # the true images and labels
    Kind("randX", True, True, "#E69F00"),  # a fraction p of the training images replaced by Gaussian noise
    Kind("randY", True, False, "#009E73"),  # a fraction p of the training labels replaced by random ones
    Kind("gaussian", False, True, "#CC79A7"),  # every image Gaussian noise of the data's mean and variance
    Kind("shuffled_pixels", False, True, "#56B4E9"),  # one fixed pixel permutation for every image
    Kind("random_pixels", False, True, "#D55E00"),  # a different random permutation for every image
)
KINDS = tuple(KIND_TABLE)


def _unknown(kind: str) -> ValueError:
    return ValueError(
        f"unknown corruption {kind!r} (allowed: {', '.join(KINDS)}, with ':p' for randX and randY, e.g. randY:0.3)"
    )


@dataclass(frozen=True)
class Corruption:
    """A corruption of the training split: a kind and the fraction p of examples it touches
    (0 for 'real', 1 for the kinds without a level). `parse` is the only reader of the spec's
    strings; `str()` writes the form the spec and the store use ('real', 'randY:0.3', 'gaussian').
    """

    kind: str
    p: float

    def __post_init__(self):
        if self.kind not in KIND_TABLE:
            raise _unknown(self.kind)
        if not 0.0 <= self.p <= 1.0:  # also refuses NaN
            raise ValueError(f"corruption level {self.p} of {self.kind} is outside [0, 1]")
        if not KIND_TABLE[self.kind].leveled and self.p != (0.0 if self.kind == "real" else 1.0):
            raise ValueError(f"{self.kind} takes no level (only randX and randY take ':p')")

    @classmethod
    def parse(cls, text: str) -> Corruption:
        """'randY:0.3' -> Corruption('randY', 0.3); 'randY' -> p 1.0; 'real' -> p 0.0."""
        kind, colon, level = str(text).partition(":")
        if kind not in KIND_TABLE:
            raise _unknown(kind)
        if not colon:
            return cls(kind, 0.0 if kind == "real" else 1.0)
        if not KIND_TABLE[kind].leveled:
            raise ValueError(f"{text!r}: only randX and randY take a level ':p'")
        try:
            p = float(level)
        except ValueError:
            raise ValueError(f"{text!r}: the level must be a number in [0, 1]") from None
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{text!r}: the level {p} is outside [0, 1]")
        return cls(kind, p)

    @classmethod
    def of(cls, kind: str, p: float) -> Corruption:
        """The corruption of a fig1 variant: its kind at the sweep's level p ('real' has none)."""
        if kind not in KIND_TABLE:
            raise _unknown(kind)
        return cls(kind, 0.0 if kind == "real" else p if KIND_TABLE[kind].leveled else 1.0)

    def __str__(self) -> str:
        return f"{self.kind}:{self.p}" if KIND_TABLE[self.kind].leveled else self.kind

    @property
    def changes_images(self) -> bool:
        return KIND_TABLE[self.kind].images

    @property
    def group(self) -> str:
        """The training images it uses: 'labels' for real and randY (the true images, which
        their models share in one pack); its own name without ':' for a corruption of the images."""
        return str(self).replace(":", "") if self.changes_images else "labels"


@dataclass(frozen=True)
class Dataset:
    name: str
    shape: tuple[int, int, int]  # (C, H, W) as stored
    classes: int
    train_size: int
    test_size: int


DATASET_TABLE: dict[str, Dataset] = _by_name(
    Dataset("digits", (1, 8, 8), 10, 1437, 360),  # scikit-learn's 8x8 digits, 80/20 split
    Dataset("cifar10", (3, 32, 32), 10, 50_000, 10_000),
    Dataset("synthetic", (3, 32, 32), 10, 50_000, 10_000),  # CIFAR-shaped uniform noise for speed tests
    Dataset("fashion-mnist", (1, 28, 28), 10, 60_000, 10_000),  # Xiao et al. 2017; Debian: dataset-fashion-mnist
    Dataset("mnist", (1, 28, 28), 10, 60_000, 10_000),
    Dataset("kmnist", (1, 28, 28), 10, 60_000, 10_000),
)
DATASETS = tuple(DATASET_TABLE)
NORMALIZATIONS = ("dataset", "per_image")

# LASS defaults (Arpit et al. 2017, Sec. 4 and Fig. 9), in [0, 1] pixel units: step alpha,
# noise beta, L-inf box radius r, and the iteration cap.
LASS_ALPHA, LASS_BETA, LASS_R, LASS_ITERS = 0.25 / 255, 0.2 / 255, 30 / 255, 20

# Corruption levels in figures: an ordered (sequential) palette per leveled kind, light (low p)
# to dark (p = 1): blues for random labels, oranges for random inputs.
# The lightest step is still visible on a white page (a reviewer found #C6DBEF faint).
LEVEL_SCALE = ("#9ECAE1", "#6BAED6", "#4292C6", "#2171B5", "#08519C", "#08306B", "#041E42")
LEVEL_SCALES = {
    "randY": LEVEL_SCALE,
    "randX": ("#FDAE6B", "#FD8D3C", "#F16913", "#D94801", "#A63603", "#7F2704", "#4D1702"),
}


# The colours of what is not a kind, level or architecture, shared by every figure.
OTHER_COLOUR = "#999999"  # a name the catalog lacks
BASELINE_COLOUR = "#555555"  # reference lines: binomial baselines, early-stopping marks
INIT_COLOUR = "#BBBBBB"  # values at initialization
TRAIN_COLOUR, VALIDATION_COLOUR = "#0072B2", "#D55E00"  # accuracy on the training labels, on held-out true labels
MISLABELED_COLOUR = "#D55E00"  # examples whose training label was made random
# Lines told apart by colour alone (the points of the accuracy-by-hyperparameter figure): Paul
# Tol's muted scheme, then more of his bright and light ones.
SERIES_COLOURS = (
    "#332288",
    "#88CCEE",
    "#44AA99",
    "#117733",
    "#999933",
    "#DDCC77",
    "#CC6677",
    "#882255",
    "#AA4499",
    "#4477AA",
    "#66CCEE",
    "#228833",
    "#CCBB44",
    "#EE6677",
    "#AA3377",
    "#BBBBBB",
)


def level_colour(p: float, kind: str = "randY") -> str:
    """The colour of corruption level p in [0, 1] on its kind's sequential scale."""
    scale = LEVEL_SCALES.get(kind, LEVEL_SCALE)
    p = min(max(float(p), 0.0), 1.0)
    return scale[round(p * (len(scale) - 1))]


def variant_colour(variant: str) -> str | None:
    """A `variant` column value's colour: a grid level ('randY:0.3') on its kind's sequential
    scale, a kind ('real', 'randX', 'gaussian') in its own colour; None for other names."""
    try:
        c = Corruption.parse(variant)
    except ValueError:
        return None
    return level_colour(c.p, c.kind) if ":" in str(variant) and c.kind in LEVEL_SCALES else kind_colour(c.kind)


def arch_colour(arch: str) -> str:
    """An architecture's colour; a name the catalog lacks (e.g. fig1's 'mlp-512x512') is grey."""
    return ARCHITECTURES[arch].colour if arch in ARCHITECTURES else OTHER_COLOUR


def kind_colour(kind: str) -> str:
    return KIND_TABLE[kind].colour if kind in KIND_TABLE else OTHER_COLOUR


# Hyperparameters a member of a pack can have on its own (sweep/axes.py packs models that differ
# only in these; trainables/engine.py takes them as (K,) vectors). SGD's, then the regularizers'
# strengths (0: off), each applied in trainables/regularize.py and bounded in the spec's
# `regularizers` group: a new regularizer is a name here, a field there and its code there.
SGD_HYPER = ("lr", "momentum", "weight_decay")
REGULARIZERS = ("input_noise", "crop", "flip", "fgsm_eps", "dropout")
