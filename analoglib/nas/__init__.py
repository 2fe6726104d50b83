"""AnalogNAS: search spaces, the published benchmark, the surrogate, searches and evaluation.

References:
    Benmeziane et al. 2023 (AnalogNAS); ``docs/nas.md``.
"""

from analoglib.nas.bench import (
    BENCH_DRIFT_TIMES,
    BenchFormatError,
    bench_path,
    load_analognas_bench,
)
from analoglib.nas.evaluate import (
    BASELINES,
    CandidateSpec,
    candidate_store,
    evaluate_candidate,
    evaluate_candidates,
)
from analoglib.nas.search import (
    MUTATION_PROBABILITIES,
    SEARCH_REVISION,
    SearchSpace,
    SearchTrace,
    digital_best,
    evolutionary_search,
    random_search,
    search_surrogate,
    surrogate_search,
)
from analoglib.nas.space import (
    FEATURES,
    MAX_GROUPS,
    NB201_OPS,
    NB201Space,
    ResNetLikeSpace,
    analognas_code,
    analognas_paper,
    cpu_small,
    parameter_count,
)
from analoglib.nas.surrogate import Surrogate, kendall_tau, ndcg_at_k

__all__ = [
    "BASELINES",
    "CandidateSpec",
    "candidate_store",
    "evaluate_candidate",
    "evaluate_candidates",
    "BENCH_DRIFT_TIMES",
    "FEATURES",
    "MAX_GROUPS",
    "MUTATION_PROBABILITIES",
    "SEARCH_REVISION",
    "NB201_OPS",
    "BenchFormatError",
    "NB201Space",
    "ResNetLikeSpace",
    "SearchSpace",
    "SearchTrace",
    "Surrogate",
    "analognas_code",
    "analognas_paper",
    "bench_path",
    "cpu_small",
    "digital_best",
    "evolutionary_search",
    "kendall_tau",
    "load_analognas_bench",
    "ndcg_at_k",
    "parameter_count",
    "random_search",
    "search_surrogate",
    "surrogate_search",
]
