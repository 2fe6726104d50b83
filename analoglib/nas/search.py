"""Architecture searches with true-evaluation budgets: evolutionary, random, surrogate-assisted.

Every search calls an *objective* on batches of configurations and counts each distinct
configuration it evaluates once against a ``budget`` (a configuration met again reuses its
score); the :class:`SearchTrace` lists the evaluations in order. Constraints (a parameter or
tile limit, a limit on the predicted accuracy variation) are a ``feasible`` function: an
infeasible configuration is never evaluated.

* :func:`evolutionary_search` is the algorithm of the AnalogNAS paper: a Latin-hypercube
  initial population, then per iteration the top half survives and the rest is replaced by
  mutated survivors (width, depth and other mutations, each applied with its probability).
  (The released code instead draws every "mutant" afresh at random, which makes it a
  constrained random search.)
* :func:`random_search` evaluates random feasible configurations.
* :func:`surrogate_search` spends part of the budget on true evaluations that train a
  :class:`~analoglib.nas.Surrogate`, runs the evolutionary search on the surrogate (free), and
  spends the rest on the surrogate's best proposals.
* :func:`search_surrogate` runs the evolutionary search on a trained surrogate alone.
* :func:`digital_best` picks the digitally best of random configurations.

References:
    Benmeziane et al. 2023; ``docs/nas.md#search``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd

from analoglib.nas.surrogate import Surrogate

__all__ = [
    "MUTATION_PROBABILITIES",
    "SEARCH_REVISION",
    "SearchSpace",
    "SearchTrace",
    "digital_best",
    "evolutionary_search",
    "random_search",
    "search_surrogate",
    "surrogate_search",
]

#: Revision of what a seeded search returns. Bump it with any change to the searches or the
#: surrogate that alters their results: stored search results are keyed by it, so results of
#: older code are computed again instead of reused.
SEARCH_REVISION = 1

#: The paper's mutation probabilities (the NAS-Bench-201 space has the single kind "op").
MUTATION_PROBABILITIES: dict[str, float] = {"width": 0.8, "depth": 0.8, "other": 0.6, "op": 1.0}

Objective = Callable[[list[Any]], np.ndarray]
Feasible = Callable[[list[Any]], np.ndarray]


class SearchSpace(Protocol):
    """What a search needs from a space (:mod:`analoglib.nas.space`)."""

    mutation_kinds: ClassVar[tuple[str, ...]]

    def sample(self, rng: np.random.Generator, n: int = 1) -> list[Any]: ...
    def latin_hypercube(self, rng: np.random.Generator, n: int) -> list[Any]: ...
    def mutate(self, config: Any, kind: str, rng: np.random.Generator) -> Any: ...
    def encode(self, configs: list[Any]) -> np.ndarray: ...
    def key(self, config: Any) -> Hashable: ...


@dataclass
class SearchTrace:
    """The evaluations of one search, in order.

    Attributes:
        method: Name of the search.
        configs: Evaluated configurations, in evaluation order (each once).
        scores: Their objective values (higher is better).
        info: Anything else the search reports (e.g. the surrogate's training-set size).
    """

    method: str
    configs: list[Any] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.configs)

    @property
    def best_so_far(self) -> np.ndarray:
        """Best score after each evaluation ``(len(self),)``."""
        return np.maximum.accumulate(np.asarray(self.scores, dtype=float))

    @property
    def best(self) -> tuple[Any, float]:
        """The best configuration and its score."""
        if not self.configs:
            raise ValueError(f"the {self.method} trace has no evaluations.")
        i = int(np.argmax(self.scores))
        return self.configs[i], float(self.scores[i])

    def ranked(
        self, key: Callable[[Any], Hashable] | None = None, exclude: set[Hashable] | None = None
    ) -> list[Any]:
        """The configurations by descending score (ties keep their evaluation order).

        Those whose ``key`` is in ``exclude`` are left out.
        """
        order = np.argsort(-np.asarray(self.scores, dtype=float), kind="stable")
        configs = [self.configs[i] for i in order]
        if exclude and key is not None:
            configs = [c for c in configs if key(c) not in exclude]
        return configs

    def __repr__(self) -> str:
        best = f", best {self.best[1]:.4g}" if self.configs else ""
        return f"SearchTrace({self.method!r}, {len(self)} evaluations{best})"


class _Evaluator:
    """Evaluates distinct configurations once each, within a budget, recording the trace."""

    def __init__(self, space: SearchSpace, objective: Objective, budget: float, method: str):
        self.space = space
        self.objective = objective
        self.budget = budget
        self.scores: dict[Hashable, float] = {}
        self.trace = SearchTrace(method)

    @property
    def left(self) -> float:
        return self.budget - len(self.trace)

    def __call__(self, configs: list[Any]) -> np.ndarray:
        """Scores of ``configs`` (new ones evaluated while budget is left, others NaN)."""
        new: list[Any] = []
        seen: set[Hashable] = set()
        for config in configs:
            key = self.space.key(config)
            if key not in self.scores and key not in seen and len(new) < self.left:
                new.append(config)
                seen.add(key)
        if new:
            values = np.asarray(self.objective(new), dtype=float).ravel()
            if values.shape != (len(new),):
                raise ValueError(
                    f"the objective returned {values.size} scores for {len(new)} configurations."
                )
            for config, value in zip(new, values, strict=True):
                self.scores[self.space.key(config)] = float(value)
                self.trace.configs.append(config)
                self.trace.scores.append(float(value))
        return np.array([self.scores.get(self.space.key(c), np.nan) for c in configs])


def _check_budget(budget: float) -> float:
    if not (budget == float("inf") or (isinstance(budget, (int, np.integer)) and budget >= 1)):
        raise ValueError(f"budget = {budget!r} is not allowed: expected an integer >= 1 or inf.")
    return float(budget)


def _feasible_only(
    draw: Callable[[int], list[Any]], feasible: Feasible | None, n: int, max_rounds: int = 50
) -> list[Any]:
    """``n`` feasible configurations from repeated draws (fewer if the constraint is too tight)."""
    found: list[Any] = []
    for _ in range(max_rounds):
        batch = draw(max(n - len(found), 1) * 2)
        if feasible is not None:
            batch = [c for c, ok in zip(batch, feasible(batch), strict=True) if ok]
        found += batch[: n - len(found)]
        if len(found) >= n:
            break
    return found


def evolutionary_search(
    space: SearchSpace,
    objective: Objective,
    budget: float,
    rng: np.random.Generator,
    population: int = 200,
    iterations: int = 200,
    feasible: Feasible | None = None,
    mutation_probabilities: Mapping[str, float] | None = None,
    method: str = "evolutionary",
) -> SearchTrace:
    """The AnalogNAS evolutionary search (maximises ``objective``).

    Args:
        space: The search space.
        objective: Scores of a list of configurations ``(n,)``, higher is better.
        budget: Distinct configurations the objective may score (``float("inf")``: no limit,
            for a surrogate objective).
        rng: The search's random stream.
        population: Population size (the paper: 200).
        iterations: Generations after the initial one (the paper: 200).
        feasible: Constraint mask of a list of configurations; infeasible ones are never
            scored or kept.
        mutation_probabilities: Probability of each mutation kind of the space for every
            child (at least one kind is applied); :data:`MUTATION_PROBABILITIES` by default.
        method: Name recorded in the trace.

    Returns:
        The trace of every scored configuration.
    """
    budget = _check_budget(budget)
    for name, value in (("population", population), ("iterations", iterations)):
        if not isinstance(value, (int, np.integer)) or value < (2 if name == "population" else 0):
            raise ValueError(f"{name} = {value!r} is not allowed: expected a larger integer.")
    probabilities = dict(
        MUTATION_PROBABILITIES if mutation_probabilities is None else mutation_probabilities
    )
    kinds = [k for k in space.mutation_kinds if probabilities.get(k, 0) > 0]
    if not kinds:
        raise ValueError(
            f"mutation_probabilities = {probabilities!r} enables none of the space's mutation "
            f"kinds {space.mutation_kinds}."
        )
    evaluate = _Evaluator(space, objective, budget, method)
    pop = _feasible_only(lambda n: space.latin_hypercube(rng, n), feasible, population)
    scores = evaluate(pop)
    keep = ~np.isnan(scores)
    pop, scores = [c for c, k in zip(pop, keep, strict=True) if k], scores[keep]
    for _ in range(int(iterations)):
        if evaluate.left <= 0 or not pop:
            break
        order = np.argsort(-scores, kind="stable")[: max(1, len(pop) // 2)]
        survivors, survivor_scores = [pop[i] for i in order], scores[order]
        taken = {space.key(c) for c in survivors}

        def children(n: int, survivors: list[Any] = survivors) -> list[Any]:
            made = []
            for _ in range(n):
                child = survivors[int(rng.integers(len(survivors)))]
                applied = [k for k in kinds if rng.random() < probabilities[k]]
                for kind in applied or [kinds[int(rng.integers(len(kinds)))]]:
                    child = space.mutate(child, kind, rng)
                made.append(child)
            return made

        offspring = [
            c
            for c in _feasible_only(children, feasible, population - len(survivors))
            if space.key(c) not in taken
        ]
        child_scores = evaluate(offspring)
        keep = ~np.isnan(child_scores)
        pop = survivors + [c for c, k in zip(offspring, keep, strict=True) if k]
        scores = np.concatenate([survivor_scores, child_scores[keep]])
    return evaluate.trace


def random_search(
    space: SearchSpace,
    objective: Objective,
    budget: int,
    rng: np.random.Generator,
    feasible: Feasible | None = None,
    method: str = "random",
) -> SearchTrace:
    """Score ``budget`` distinct random feasible configurations."""
    budget_f = _check_budget(budget)
    evaluate = _Evaluator(space, objective, budget_f, method)
    for _ in range(100):
        if evaluate.left <= 0:
            break
        evaluate(_feasible_only(lambda n: space.sample(rng, n), feasible, int(evaluate.left)))
    return evaluate.trace


def digital_best(
    space: SearchSpace,
    digital: Objective,
    objective: Objective,
    budget: int,
    rng: np.random.Generator,
    feasible: Feasible | None = None,
) -> SearchTrace:
    """Score ``budget`` random configurations digitally; evaluate only the digital best.

    The trace holds the one analog evaluation (``objective`` of the digital best); ``info``
    records its digital score. This is what one gets by searching digitally and then
    deploying on analog hardware.
    """
    digital_trace = random_search(space, digital, budget, rng, feasible, method="digital")
    config, digital_score = digital_trace.best
    trace = SearchTrace("digital_best", [config], [float(objective([config])[0])])
    trace.info["digital_score"] = digital_score
    return trace


def search_surrogate(
    space: SearchSpace,
    surrogate: Surrogate,
    rng: np.random.Generator,
    population: int = 200,
    iterations: int = 200,
    feasible: Feasible | None = None,
    max_avm: float = float("inf"),
) -> SearchTrace:
    """The evolutionary search on a trained surrogate's score (no budget: predictions are free).

    Configurations must pass ``feasible`` and, when the surrogate has an AVM model and
    ``max_avm`` is finite, have a predicted AVM <= ``max_avm``. Use :meth:`SearchTrace.ranked`
    for the proposals in order.
    """

    def predicted_feasible(configs: list[Any]) -> np.ndarray:
        ok = np.ones(len(configs), dtype=bool) if feasible is None else feasible(configs)
        if np.isfinite(max_avm) and "avm" in surrogate.models:
            ok &= surrogate.predict(space.encode(configs))["avm"].to_numpy() <= max_avm
        return ok

    return evolutionary_search(
        space,
        lambda configs: surrogate.predict(space.encode(configs))["score"].to_numpy(),
        float("inf"),
        rng,
        population,
        iterations,
        predicted_feasible,
        method="on_surrogate",
    )


def surrogate_search(
    space: SearchSpace,
    objective: Callable[[list[Any]], pd.DataFrame],
    budget: int,
    rng: np.random.Generator,
    n_train: int,
    population: int = 200,
    iterations: int = 200,
    feasible: Feasible | None = None,
    max_avm: float = float("inf"),
    surrogate_seed: int = 0,
) -> SearchTrace:
    """AnalogNAS with a true-evaluation budget: train the surrogate, search on it, verify.

    1. ``n_train`` Latin-hypercube configurations are evaluated truly (columns ``accuracy``,
       ``avm`` and ``std`` of ``objective``'s table) and train a :class:`Surrogate`;
    2. :func:`evolutionary_search` runs on the surrogate's score (no budget) under
       ``feasible`` and predicted AVM <= ``max_avm``;
    3. the remaining ``budget - n_train`` evaluations go to the surrogate's best-scored
       proposals not yet evaluated.

    Returns:
        The trace of the ``budget`` true evaluations (scores = ``accuracy``); ``info`` holds
        ``n_train`` and the surrogate.
    """
    budget_f = _check_budget(budget)
    if not isinstance(n_train, (int, np.integer)) or not 2 <= n_train < budget_f:
        raise ValueError(
            f"n_train = {n_train!r} is not allowed: expected 2 <= n_train < budget ({budget})."
        )
    tables: list[pd.DataFrame] = []

    def true_accuracy(configs: list[Any]) -> np.ndarray:
        table = objective(configs)
        tables.append(table)
        return table["accuracy"].to_numpy()

    evaluate = _Evaluator(space, true_accuracy, budget_f, "surrogate_evolutionary")
    train = _feasible_only(lambda n: space.latin_hypercube(rng, n), feasible, int(n_train))
    evaluate(train)
    measured = pd.concat(tables, ignore_index=True)
    x = space.encode(evaluate.trace.configs)
    surrogate = Surrogate(seed=surrogate_seed).fit(
        x, measured["accuracy"], measured.get("avm"), measured.get("std")
    )

    proposals = search_surrogate(space, surrogate, rng, population, iterations, feasible, max_avm)
    todo = proposals.ranked(space.key, set(evaluate.scores))[: int(evaluate.left)]
    evaluate(todo)
    evaluate.trace.info.update(
        n_train=int(n_train), surrogate=surrogate, surrogate_evaluations=len(proposals)
    )
    return evaluate.trace
