"""recommender: "why this recommendation", trained on generated users with planted effects.

Each user is a vector of named features: ``watched:<title>`` (0/1), ``recent:<title>`` (recency
of that viewing, exp(-days/60), 0 when not watched) and ``genre:<genre>`` (stated affinity in
[0, 1]). The generator scores every movie for every user with four planted effects, samples the
user's next watch from the softmax of those scores, and the model (an MLP) learns to predict it
from the features. Its logits are the movie scores (class_names = titles).

Planted effects (the ground truth ``planted.json`` records, with probe users that trigger each):
- genre: ``genre:G`` raises every movie of genre G;
- sequel: ``watched:X`` raises X's sequel Y ("because you watched Alien" -> Aliens);
- recency: ``recent:X`` raises the other movies of X's genre (recently watched titles weigh more;
  the mere fact of having watched X long ago does not);
- already watched: ``watched:M`` lowers M itself.
"""

from __future__ import annotations

import torch
from torch import Tensor

from service.nets import MLP

from ._examples import EXAMPLES_FILE, example, first_per_class, report, tabular
from ._recipe import (
    DEFAULT_PARAMS,
    SMALL_MODEL_BATCH,
    Built,
    algorithms,
    baselines,
    deterministic,
    fit,
)

NAME = "recommender"
SEED = 0
N_USERS = 40_000
N_REFERENCE = 32
HIDDEN = (128,)
N_EXAMPLES = 8  # held-out users, one per planted recommendation

GENRES = ("Sci-Fi", "Crime", "Animation", "Romance", "Action", "Horror")
MOVIES = (
    ("Alien", "Sci-Fi"), ("Aliens", "Sci-Fi"), ("Blade Runner", "Sci-Fi"), ("The Matrix", "Sci-Fi"),
    ("The Godfather", "Crime"), ("The Godfather Part II", "Crime"), ("Heat", "Crime"),
    ("The Departed", "Crime"),
    ("Toy Story", "Animation"), ("Toy Story 2", "Animation"), ("Spirited Away", "Animation"),
    ("Up", "Animation"),
    ("Before Sunrise", "Romance"), ("Before Sunset", "Romance"), ("Casablanca", "Romance"),
    ("Notting Hill", "Romance"),
    ("The Terminator", "Action"), ("Terminator 2", "Action"), ("Die Hard", "Action"),
    ("Mad Max: Fury Road", "Action"),
    ("The Shining", "Horror"), ("Halloween", "Horror"), ("Get Out", "Horror"),
    ("The Exorcist", "Horror"),
)
TITLES = tuple(t for t, _ in MOVIES)
SEQUELS = (("Alien", "Aliens"), ("The Godfather", "The Godfather Part II"),
           ("Toy Story", "Toy Story 2"), ("Before Sunrise", "Before Sunset"),
           ("The Terminator", "Terminator 2"))

GENRE_WEIGHT = 3.0
SEQUEL_WEIGHT = 4.0
RECENCY_WEIGHT = 3.0
WATCHED_WEIGHT = -6.0
WATCH_PROBABILITY = 0.12
RECENCY_DAYS = 60.0

FEATURES = ([f"watched:{t}" for t in TITLES] + [f"recent:{t}" for t in TITLES]
            + [f"genre:{g}" for g in GENRES])
REASONS = [
    {"prefix": "watched:", "template": "because you watched {name}"},
    {"prefix": "recent:", "template": "because you recently watched {name}"},
    {"prefix": "genre:", "template": "because you like {name} films"},
]

_N = len(TITLES)


def _effect_matrices() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Score = features @ W + popularity, with W (n_features, n_movies) built from the effects."""
    genre_of = torch.tensor([GENRES.index(g) for _, g in MOVIES])
    same_genre = genre_of[:, None] == genre_of[None, :]                        # (n, n)
    w_watched = WATCHED_WEIGHT * torch.eye(_N)
    for prequel, sequel in SEQUELS:
        w_watched[TITLES.index(prequel), TITLES.index(sequel)] += SEQUEL_WEIGHT
    w_recent = RECENCY_WEIGHT * (same_genre & ~torch.eye(_N, dtype=torch.bool)).float()
    w_genre = GENRE_WEIGHT * (torch.arange(len(GENRES))[:, None] == genre_of[None, :]).float()
    # A mild popularity prior that breaks ties between movies of a genre (first listed = most).
    rank = [[t for t, g in MOVIES if g == genre].index(title) for title, genre in MOVIES]
    popularity = 0.75 - 0.5 * torch.tensor(rank, dtype=torch.float32)    # 0.75 ... -0.75
    return w_watched, w_recent, w_genre, popularity


def planted_scores(x: Tensor) -> Tensor:
    """The generator's true score of every movie: ``(batch, n_features) -> (batch, n_movies)``."""
    w_watched, w_recent, w_genre, popularity = _effect_matrices()
    w = torch.cat([w_watched, w_recent, w_genre])                              # (n_features, n)
    return x @ w + popularity


def users(n: int, generator: torch.Generator) -> Tensor:
    """``(n, n_features)`` users: random viewing histories, recencies and genre affinities."""
    watched = (torch.rand(n, _N, generator=generator) < WATCH_PROBABILITY).float()
    days = 365.0 * torch.rand(n, _N, generator=generator)
    recent = watched * torch.exp(-days / RECENCY_DAYS)
    affinity = torch.rand(n, len(GENRES), generator=generator) ** 3           # mostly mild
    return torch.cat([watched, recent, affinity], dim=1)


def user(**named: float) -> Tensor:
    """One ``(n_features,)`` user from feature names, e.g. ``user(**{"watched:Alien": 1.0})``."""
    x = torch.zeros(len(FEATURES))
    for feature, value in named.items():
        x[FEATURES.index(feature)] = value
    return x


def _watched(title: str, recency: float) -> dict[str, float]:
    return {f"watched:{title}": 1.0, f"recent:{title}": recency}


def probes() -> list[dict]:
    """Users built to trigger one planted effect each, with distractors of the other kinds."""
    out = []
    # genre: a strong affinity for G, mild ones elsewhere, two old viewings outside G.
    for i, genre in enumerate(GENRES):
        other = GENRES[(i + 1) % len(GENRES)]
        old = [t for t, g in MOVIES if g not in (genre, other) and t not in dict(SEQUELS)][:2]
        feats = {f"genre:{genre}": 1.0, f"genre:{other}": 0.2,
                 **_watched(old[0], 0.1), **_watched(old[1], 0.05)}
        out.append(("genre", f"genre:{genre}", feats))
    # sequel: watched X long ago, a mild affinity for X's genre, one old viewing elsewhere.
    for prequel, _ in SEQUELS:
        genre = dict(MOVIES)[prequel]
        other = next(t for t, g in MOVIES if g != genre and t not in dict(SEQUELS))
        feats = {**_watched(prequel, 0.05), f"genre:{genre}": 0.2,
                 **_watched(other, 0.1), f"genre:{dict(MOVIES)[other]}": 0.3}
        out.append(("sequel", f"watched:{prequel}", feats))
    # recency: watched X yesterday (no sequel to X), a mild affinity elsewhere, one old viewing.
    for title in ("Heat", "Blade Runner", "Spirited Away", "Casablanca", "Die Hard", "Get Out"):
        genre = dict(MOVIES)[title]
        other_genre = GENRES[(GENRES.index(genre) + 2) % len(GENRES)]
        old = next(t for t, g in MOVIES if g == other_genre and t not in dict(SEQUELS))
        feats = {**_watched(title, 1.0), f"genre:{genre}": 0.1, f"genre:{other_genre}": 0.2,
                 **_watched(old, 0.05)}
        out.append(("recency", f"recent:{title}", feats))
    result = []
    for effect, cause, feats in out:
        x = user(**feats)
        expected = TITLES[int(planted_scores(x[None]).argmax())]
        prefix, name = cause.split(":", 1)
        template = next(r["template"] for r in REASONS if r["prefix"] == prefix + ":")
        w = torch.cat(_effect_matrices()[:3])[FEATURES.index(cause)]             # (n_movies,)
        result.append({
            "effect": effect,
            "cause": cause,
            "expected_recommendation": expected,
            "boosted_by_cause": [TITLES[i] for i in torch.nonzero(w > 0).flatten().tolist()],
            "expected_reason": template.format(name=name),
            "features": feats,
            "input": [round(v, 6) for v in x.tolist()],
        })
    return result


def planted() -> dict:
    """The ground truth written to planted.json (for the e2e tests and readers)."""
    return {
        "model": NAME,
        "features": FEATURES,
        "movies": [{"title": t, "genre": g} for t, g in MOVIES],
        "effects": {
            "genre": {"weight": GENRE_WEIGHT, "rule": "genre:G raises every movie of genre G"},
            "sequel": {"weight": SEQUEL_WEIGHT, "rule": "watched:X raises X's sequel Y",
                       "pairs": [list(p) for p in SEQUELS]},
            "recency": {"weight": RECENCY_WEIGHT,
                        "rule": "recent:X (exp(-days/60)) raises the other movies of X's genre"},
            "already_watched": {"weight": WATCHED_WEIGHT, "rule": "watched:M lowers M itself"},
        },
        "generator": {"n_users": N_USERS, "seed": SEED, "watch_probability": WATCH_PROBABILITY,
                      "label": "next watch ~ softmax(planted scores)"},
        "explain": {"algorithm": "IntegratedGradients", "baseline": "zeros (spec default)",
                    "target": "the recommended movie (argmax)",
                    "expectation": "the top-attributed feature of each probe is its cause"},
        "probes": probes(),
    }


def build() -> Built:
    with deterministic(SEED) as gen:
        x = users(N_USERS, gen)
        probs = torch.softmax(planted_scores(x), dim=1)
        y = torch.multinomial(probs, 1, generator=gen).squeeze(1)             # next watch
        n_train = int(0.8 * N_USERS)
        model = MLP(len(FEATURES), HIDDEN, _N)
        losses = fit(model, x[:n_train], y[:n_train], epochs=8, batch_size=256, lr=3e-3,
                     generator=gen)
    x_test, p_test = x[n_train:], probs[n_train:]
    with torch.no_grad():
        logits = model(x_test)
    agreement = (logits.argmax(1) == p_test.argmax(1)).float().mean().item()
    nll = -(p_test * torch.log_softmax(logits, 1)).sum(1).mean().item()
    oracle_nll = -(p_test * torch.log(p_test)).sum(1).mean().item()
    metrics = {
        "model": NAME,
        "dataset": "generated users with planted effects (see planted.json)",
        "n_train": n_train,
        "n_held_out": N_USERS - n_train,
        "held_out_top1_agreement_with_planted": round(agreement, 4),
        "held_out_cross_entropy": round(nll, 4),
        "planted_entropy_lower_bound": round(oracle_nll, 4),
        "final_train_loss": round(losses[-1], 5),
    }
    spec = {
        "name": NAME,
        "version": "1.0",
        "description": "Movie recommender (MLP) on generated users with planted genre, sequel "
                       "and recency effects; explanations name the reasons",
        "purpose": "production",
        "model": {"file": "model.py", "class": "RecommenderMLP", "weights": "weights.pt"},
        "input": {"kind": "tabular", "shape": [len(FEATURES)], "feature_names": FEATURES},
        "output": {"kind": "classification", "class_names": list(TITLES)},
        "explain": {
            "algorithms": algorithms(cam=False),
            "default_algorithm": "IntegratedGradients",
            "default_params": DEFAULT_PARAMS,
            # the MLP's hidden units after the ReLU (it has no embedding: features are flat)
            "layers": {"hidden": "net.1"},
            "default_layer": "hidden",
            "default_target": "predicted",
            "top_k_features": 3,
            "reasons": REASONS,
        },
        # zeros = a user with no history and no stated tastes.
        "baselines": baselines("zeros"),
        "batch": SMALL_MODEL_BATCH,
    }
    return Built(
        name=NAME, model=model, base="MLP",
        base_args=f"{len(FEATURES)}, {HIDDEN}, {_N}", spec=spec,
        data_files={
            "baseline_mean.pt": x[:n_train].mean(0, keepdim=True),            # (1, n_features)
            "reference.pt": x[:N_REFERENCE].clone(),                          # (32, n_features)
        },
        reports={"metrics.json": metrics, "planted.json": planted(),
                 EXAMPLES_FILE: examples(x_test)},
    )


def examples(x_test: Tensor) -> dict:
    """Held-out users (the first with each planted best movie) and one probe per effect; the
    true class is the generator's best movie (argmax of the planted scores)."""
    best = planted_scores(x_test).argmax(1)                                   # (n_test,)
    rows = first_per_class(best, 1)[:N_EXAMPLES]
    out = [example(f"{NAME}-{i}", tabular(x_test[i].tolist(), FEATURES, drop_zeros=True,
                                          digits=4), int(best[i]), TITLES) for i in rows]
    seen: set[str] = set()
    for j, probe in enumerate(probes()):
        if probe["effect"] in seen:
            continue
        seen.add(probe["effect"])
        out.append(example(f"{NAME}-probe-{j}", tabular(probe["input"], FEATURES,
                                                        drop_zeros=True, digits=4),
                           TITLES.index(probe["expected_recommendation"]), TITLES,
                           note=f"probe: {probe['effect']} effect of {probe['cause']}"))
    return report(NAME, "the generator's best movie (planted scores)", out)
