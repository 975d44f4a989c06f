"""The Open Bandit Dataset sample (ZOZOTOWN), read from where Open Bandit Pipeline ships it.

The sample (10,000 rounds per behaviour policy and campaign, 80 items, 3 positions; uniform
random and Bernoulli Thompson sampling logs) is part of obp's source distribution: install obp
(``pip install --no-deps --ignore-requires-python obp==0.5.7``), or unpack
``pip download --no-deps --ignore-requires-python obp==0.5.7`` somewhere and point
``$MLSYS_OBD`` at its ``obp/dataset/obd`` folder. mlsys never copies it (its licence forbids
redistribution). Y. Saito et al., *Open Bandit Dataset and Pipeline*, NeurIPS Datasets 2021.
"""

from __future__ import annotations

import csv
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlsys.common.data import cache_root
from mlsys.common.errors import DatasetNotFoundError, InvalidInputError, ParseError
from mlsys.recsys.explore._feedback import BanditFeedback, FloatArray

__all__ = [
    "OBD_ENV_VAR",
    "OpenBanditData",
    "find_open_bandit_dataset",
    "load_open_bandit_dataset",
    "zozotown_bts_prior",
]

OBD_ENV_VAR = "MLSYS_OBD"
_BEHAVIORS = ("random", "bts")
_CAMPAIGNS = ("all", "men", "women")


def _candidates(path: str | os.PathLike[str] | None) -> list[Path]:
    out: list[Path] = []
    if path is not None:
        out.append(Path(path))
    env = os.environ.get(OBD_ENV_VAR)
    if env:
        out.append(Path(env))
    spec = importlib.util.find_spec("obp")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            out.append(Path(loc) / "dataset" / "obd")
    out.append(cache_root() / "obp-0.5.7" / "obp" / "dataset" / "obd")
    return out


def find_open_bandit_dataset(path: str | os.PathLike[str] | None = None) -> Path:
    """The ``obd`` folder (holding ``random/`` and ``bts/``): ``path``, ``$MLSYS_OBD``, an installed
    obp, or ``<cache>/obp-0.5.7`` (an unpacked sdist); :class:`DatasetNotFoundError` lists where it looked."""
    tried = _candidates(path)
    for cand in tried:
        if (cand / "random" / "all" / "all.csv").is_file():
            return cand
    raise DatasetNotFoundError(
        "Open Bandit Dataset sample not found; looked in "
        + ", ".join(str(t) for t in tried)
        + ". Install obp "
        "(pip install --no-deps --ignore-requires-python obp==0.5.7) or set $MLSYS_OBD to its obp/dataset/obd folder"
    )


@dataclass(frozen=True, eq=False)
class OpenBanditData:
    """One behaviour policy's log for one campaign.

    Attributes:
        feedback: rows as :class:`BanditFeedback` (positions 0..2, propensities as logged);
            ``context`` holds the user-item affinity features.
        user_features: ``(n, 4)`` the hashed categorical user features, as strings.
        timestamps: ``(n,)`` the log's timestamps, as strings.
    """

    feedback: BanditFeedback
    user_features: np.ndarray
    timestamps: np.ndarray
    behavior: str
    campaign: str

    @property
    def on_policy_value(self) -> float:
        """The behaviour policy's own click rate: the ground truth an off-policy estimate aims at."""
        return float(self.feedback.reward.mean())


def load_open_bandit_dataset(
    behavior: str = "random", campaign: str = "all", *, path: str | os.PathLike[str] | None = None
) -> OpenBanditData:
    """Read ``<obd>/<behavior>/<campaign>/<campaign>.csv`` (rows sorted by timestamp, stably).

    Example:
        >>> data = load_open_bandit_dataset("random", "all")  # doctest: +SKIP
        >>> data.feedback.n_actions, data.feedback.slate_size  # doctest: +SKIP
        (80, 3)
    """
    if behavior not in _BEHAVIORS:
        raise InvalidInputError(f"behavior must be one of {_BEHAVIORS}, got {behavior!r}")
    if campaign not in _CAMPAIGNS:
        raise InvalidInputError(f"campaign must be one of {_CAMPAIGNS}, got {campaign!r}")
    root = find_open_bandit_dataset(path)
    file = root / behavior / campaign / f"{campaign}.csv"
    if not file.is_file():
        raise DatasetNotFoundError(
            f"{file}: the Open Bandit Dataset sample at {root} has no {behavior}/{campaign} log"
        )
    with file.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        need = ["timestamp", "item_id", "position", "click", "propensity_score"]
        missing = [c for c in need if c not in header]
        if missing:
            raise ParseError(f"missing columns {missing}", path=file, line=1)
        col = {name: header.index(name) for name in need}
        ucols = [i for i, h in enumerate(header) if h.startswith("user_feature_")]
        acols = [i for i, h in enumerate(header) if h.startswith("user-item_affinity_")]
        ts, item, pos, click, ps, uf, aff = [], [], [], [], [], [], []
        for lineno, row in enumerate(reader, start=2):
            try:
                ts.append(row[col["timestamp"]])
                item.append(int(row[col["item_id"]]))
                pos.append(int(row[col["position"]]))
                click.append(float(row[col["click"]]))
                ps.append(float(row[col["propensity_score"]]))
                uf.append([row[i] for i in ucols])
                aff.append([float(row[i]) for i in acols])
            except (ValueError, IndexError) as exc:
                raise ParseError(f"bad row: {exc}", path=file, line=lineno) from None
    order = np.argsort(np.array(ts), kind="stable")
    positions = np.unique(pos, return_inverse=True)[1].astype(np.int64)  # 1..3 -> 0..2
    n_items = int(max(item)) + 1
    fb = BanditFeedback(
        action=np.array(item, dtype=np.int64)[order],
        reward=np.array(click)[order],
        propensity=np.array(ps)[order],
        position=positions[order],
        n_actions=n_items,
        context=np.array(aff, dtype=np.float64)[order] if acols else None,
    )
    return OpenBanditData(fb, np.array(uf, dtype=object)[order], np.array(ts)[order], behavior, campaign)


def zozotown_bts_prior(
    campaign: str = "all", *, path: str | os.PathLike[str] | None = None
) -> tuple[FloatArray, FloatArray]:
    """The Beta prior ``(alpha, beta)`` per item of ZOZOTOWN's Bernoulli TS policy, read from
    obp's ``policy/conf/prior_bts.yaml`` next to the data set."""
    if campaign not in _CAMPAIGNS:
        raise InvalidInputError(f"campaign must be one of {_CAMPAIGNS}, got {campaign!r}")
    root = find_open_bandit_dataset(path)
    file = root.parent.parent / "policy" / "conf" / "prior_bts.yaml"
    if not file.is_file():
        raise DatasetNotFoundError(f"{file}: ZOZOTOWN prior not found next to the data set")
    # The file is a plain two-level mapping of lists: campaign -> {alpha: [...], beta: [...]}.
    values: dict[str, dict[str, list[float]]] = {}
    current: str | None = None
    key: str | None = None
    for lineno, raw in enumerate(file.read_text().splitlines(), start=1):
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        text = line.strip()
        try:
            if indent == 0 and text.endswith(":"):
                current, key = text[:-1], None
                values[current] = {}
            elif text.endswith(":") and current is not None:
                key = text[:-1]
                values[current][key] = []
            elif text.startswith("- ") and current is not None and key is not None:
                values[current][key].append(float(text[2:]))
            else:
                raise ValueError(f"unexpected line {text!r}")
        except ValueError as exc:
            raise ParseError(str(exc), path=file, line=lineno) from None
    try:
        alpha = np.array(values[campaign]["alpha"])
        beta = np.array(values[campaign]["beta"])
    except KeyError as exc:
        raise ParseError(f"no {exc} entry for campaign {campaign!r}", path=file) from None
    return alpha, beta
