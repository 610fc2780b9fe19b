"""A served answer equals the engine's answer in process, for every served model and every
algorithm its spec enables: the cases are derived from the served spec (GetModelSpec through
the gateway; the case families of tests/e2e/cases.py), sent over REST to the session's TorchServe
(one at a time, then in concurrent bursts that the handler fuses, and a subset over gRPC), and
compared with the engine classes of service.attribution called directly on the archive's
model, baselines and the request's target, params and seed (oracle.expected)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import torch

from service.client import ExplainClient, Explanation
from tests.e2e import cases, oracle
from tests.e2e.conftest import BUNDLED_STORE, CLASSIFIERS, TEXT_MODELS

pytestmark = pytest.mark.e2e

# The classifiers and the test fixtures; the text models' served == engine check is
# tests/e2e/test_text_e2e.py (their requests and answers are of another shape).
MODELS = (*CLASSIFIERS, "tiny", "tab")

# Parameter values (by parameter name, for every algorithm that has it) that keep resnet18
# (3x224x224, a few hundred ms per forward and backward on 2 shared cores) within the module's
# time budget: few steps and samples, occlusion windows and superpixels (NeuronFeatureAblation:
# 3136 forwards at the default 4) of a quarter of the image.
# On the 30- and 54-feature tabular models, 16 samples instead of 64: Shapley value sampling
# costs n_samples x (features + 1) forwards on each side (the default 64 is checked on the
# tiny fixture).
CHEAP: dict[str, dict[str, object]] = {
    "resnet18": {"n_steps": 2, "n_samples": 2, "nt_samples": 2, "base_n_steps": 2,
                 "window": 112, "stride": 112, "superpixel": 56, "perturbations_per_eval": 4},
    "breast_cancer": {"n_samples": 16},
    "recommender": {"n_samples": 16},
}
EXPENSIVE = ("resnet18",)
# resnet18's reference set has 16 rows of 3x224x224: DeepLiftShap over it costs ~10 s per
# target on each side. Its reference-set methods get two rows of it, sent as an explicit
# tensor (the spec's own reference set is exercised on every other model).
REFERENCE_ROWS = {"resnet18": 2}
TOLERANCES: dict[str, oracle.Tol] = {}

# Algorithms sent in fused bursts on an expensive model (the others: every deterministic one).
FUSED_ON_EXPENSIVE = ("Saliency",)


@pytest.fixture(scope="module")
def client(server):
    with ExplainClient(f"127.0.0.1:{server.ports['gateway']}", token=server.key("inference"),
                       timeout=300) as c:
        yield c


@pytest.fixture(scope="module")
def context(server, sources, client) -> Callable[[str], cases.Context]:
    """model -> its cases.Context (served spec, archive read in process, inputs), built once."""
    made: dict[str, cases.Context] = {}

    def get(model: str) -> cases.Context:
        if model not in made:
            directory = sources[model] if model in sources else BUNDLED_STORE / model
            archive = oracle.Archive(model, directory)
            spec = client.model_spec(model)
            made[model] = cases.Context(spec=spec, archive=archive, inputs=_inputs(archive),
                                         cheap=CHEAP.get(model, {}),
                                         expensive=model in EXPENSIVE,
                                         reference_baseline=_reference_rows(archive, model))
        return made[model]

    return get


def _inputs(archive: oracle.Archive, n: int = 8) -> tuple[np.ndarray, ...]:
    """``n`` model-space inputs: rows of the archive's reference set (held-in training rows)
    with a little noise, else standard normal draws."""
    g = np.random.default_rng(0)
    refs = archive.named_of_kind("reference_set")
    if refs:
        rows = archive.definition(refs[0]).numpy()
        base = [rows[i % rows.shape[0]] for i in range(n)]
    else:
        base = [np.zeros(archive.shape, np.float32)] * n
    return tuple((b + g.normal(0, 0.3 if refs else 1.0, archive.shape)).astype(np.float32)
                 for b in base)


def _reference_rows(archive: oracle.Archive, model: str) -> dict | None:
    k = REFERENCE_ROWS.get(model)
    if k is None:
        return None
    rows = archive.definition(archive.named_of_kind("reference_set")[0])[:k].numpy()
    return {"tensor": oracle.tensor_json(rows)}


def post(server, case: oracle.Case) -> requests.Response:
    return requests.post(f"{server.inference_url}/explanations/{case.model}", json=case.body(),
                         headers=server.headers(), timeout=300)


def check(ctx: cases.Context, case: oracle.Case, served: oracle.Answer,
          want: oracle.Answer | None = None) -> list[str]:
    """The differences between a served answer and the oracle's, as lines naming the case.
    Targets the server chose among (near-)tied logits are accepted, and the oracle then
    explains those."""
    tol = TOLERANCES.get(case.model, oracle.FLOAT32)
    want = want or oracle.expected(ctx.archive, case)
    got, mine = [e.target for e in served.explanations], [e.target for e in want.explanations]
    if got != mine and len(got) == len(mine):
        logits = want.output
        if all(abs(logits[a] - logits[b]) <= 1e-4 * max(1.0, abs(logits[b]))
               for a, b in zip(got, mine)):
            want = oracle.expected(ctx.archive, case, served_targets=got)
    if served.algorithm != case.algorithm:
        return [f"{case.name}: answered by {served.algorithm!r}"]
    return [f"{case.name}: {line}" for line in oracle.compare(served, want, tol)]


# -- the table covers every served model and every algorithm -------------------------------------

def test_every_served_model_is_in_the_table(server) -> None:
    """Every served model is compared: here, or (the text models) in test_text_e2e.py."""
    assert set(server.models) == set(MODELS) | set(TEXT_MODELS)
    assert not set(MODELS) & set(TEXT_MODELS)


def test_every_enabled_algorithm_has_a_case(context) -> None:
    """No silent skips: every algorithm every served model enables has a case with an oracle
    (or is listed in oracle.NOT_COMPARED with its reason), the served spec is the archive's,
    and the oracle reads each method's baseline as the served spec states it."""
    for model in MODELS:
        ctx = context(model)
        enabled = [a.name for a in ctx.spec.algorithms]
        assert enabled == list(ctx.archive.raw["explain"]["algorithms"]), model
        table = cases.cases(ctx)
        covered = {c.algorithm for c in table}
        missing = [a for a in enabled if a not in covered and a not in oracle.NOT_COMPARED]
        assert not missing, f"{model}: no case for {missing}"
        unknown = [a for a in enabled if a not in oracle.METHODS and a not in oracle.NOT_COMPARED]
        assert not unknown, f"{model}: no oracle for {unknown} (tests/e2e/oracle.py METHODS)"
        for a in ctx.spec.algorithms:
            assert oracle.METHODS[a.name].takes(ctx.params(a)) == a.baselines, (model, a.name)
        # every variant kind is there: a non-default baseline and a topK target at least
        assert any(c.baseline is not None for c in table), model
        assert any("topK" in c.target for c in table), model


# -- one request at a time ----------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_served_equals_engine(model, server, context) -> None:
    """Every case of the model's table, sent alone (one request in flight: no fusion), equals
    the engine's answer in process."""
    ctx = context(model)
    table = cases.cases(ctx)
    problems: list[str] = []
    t0 = time.monotonic()
    # One sender thread: the next request is served while this thread computes the oracle.
    with ThreadPoolExecutor(1) as sender:
        replies = [sender.submit(post, server, c) for c in table]
        for case, reply in zip(table, replies):
            want = oracle.expected(ctx.archive, case)
            r = reply.result()
            if r.status_code != 200:
                problems.append(f"{case.name}: HTTP {r.status_code} {r.text[:300]}")
                continue
            problems += check(ctx, case, oracle.answer_from_json(r.json()), want)
    took = time.monotonic() - t0
    assert not problems, (f"{len(problems)} differences in {len(table)} cases:\n"
                          + "\n".join(problems))
    print(f"{model}: {len(table)} cases equal in {took:.1f} s")


# -- fused bursts -------------------------------------------------------------------------------

def _burst(server, burst: list[oracle.Case]) -> list[requests.Response]:
    """All at once (released together), so that TorchServe batches them."""
    start = threading.Barrier(len(burst))

    def send(c: oracle.Case) -> requests.Response:
        start.wait()
        return post(server, c)

    with ThreadPoolExecutor(len(burst)) as pool:
        return list(pool.map(send, burst))


@pytest.mark.parametrize("model", MODELS)
def test_fused_answers_equal_engine(model, server, context) -> None:
    """Concurrent requests of one deterministic algorithm (other inputs, targets and
    per-example baselines) are fused into one engine call; each answer still equals the
    engine's answer to that request alone."""
    ctx = context(model)
    arch = ctx.archive
    n = min(max(2, ctx.spec.batch_size), 3 if model in EXPENSIVE else 4)
    others = [n_ for n_ in arch.named_of_kind("zeros", "constant", "tensor")
              if n_ != arch.default_baseline and arch.definition(n_).shape[0] == 1]
    targets: list[dict] = [{}, {"index": 0}, {"topK": 2}]
    algos = [a for a in ctx.spec.algorithms if a.name not in {s.name for s in ctx.stochastic()}]
    if model in EXPENSIVE:
        algos = [a for a in algos if a.name in FUSED_ON_EXPENSIVE]
    assert algos, model
    problems: list[str] = []
    unfused: list[str] = []
    for a in algos:
        baselines: list[dict | None] = [None]
        if a.baselines == "per_example":
            baselines += [{"named": o} for o in others] + [{"constant": 0.1}]
        burst = [ctx.case(a, f"fused{i}", x=i, target=targets[i % len(targets)],
                          baseline=baselines[i % len(baselines)]) for i in range(n)]
        for _ in range(3):  # TorchServe forms batches by time: retry a burst it split
            replies = _burst(server, burst)
            assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
            answers = [oracle.answer_from_json(r.json()) for r in replies]
            if max(s.fused_group_size for s in answers) >= 2:
                break
        else:
            unfused.append(a.name)
        for case, served in zip(burst, answers):
            problems += check(ctx, case, served)
    assert not problems, "\n".join(problems)
    assert not unfused, f"{model}: never fused in 3 bursts of {n}: {unfused}"


# -- gRPC through the gateway ---------------------------------------------------------------------

def _grpc_subset(ctx: cases.Context) -> list[oracle.Case]:
    """The defaults of the default algorithm, of the first seeded and of the first
    reference-set algorithm, the topK and the non-tensor input cases; on an expensive model
    the default algorithm's defaults and the seeded topK case."""
    table = cases.cases(ctx)
    seeded = {a.name for a in ctx.stochastic()[:1]}
    if ctx.expensive:
        return [c for c in table if c.name == f"{ctx.spec.name}/{ctx.spec.default_algorithm}"
                f"/defaults" or (c.algorithm in seeded and "topK" in c.target)]
    names = {ctx.spec.default_algorithm, *seeded}
    names |= {a.name for a in ctx.by_takes("reference_set")[:1]}
    return [c for c in table
            if (c.algorithm in names and c.name.endswith("/defaults"))
            or "topK" in c.target or c.name.endswith(("/example", "/png", "/features"))]


@pytest.mark.parametrize("model", MODELS)
def test_grpc_equals_rest_and_engine(model, server, client, context) -> None:
    """The same requests over gRPC (the gateway's Explain) and REST, one at a time, give the
    same answer bit for bit, and that answer is the engine's."""
    ctx = context(model)
    problems: list[str] = []
    for case in _grpc_subset(ctx):
        r = post(server, case)
        assert r.status_code == 200, (case.name, r.text[:300])
        rest = oracle.answer_from_json(r.json())
        g = oracle.answer_from_client(Explanation.from_proto(
            client.stub.Explain(case.proto(), metadata=client.metadata, timeout=300)))
        same = (g.index == rest.index and np.array_equal(g.output, rest.output)
                and len(g.explanations) == len(rest.explanations)
                and all(a.target == b.target and np.array_equal(a.attributions, b.attributions)
                        and (a.instance_output, a.baseline_output, a.approximation_error)
                        == (b.instance_output, b.baseline_output, b.approximation_error)
                        for a, b in zip(g.explanations, rest.explanations)))
        if not same:
            problems.append(f"{case.name}: gRPC != REST: "
                            + "; ".join(oracle.compare(g, rest, oracle.Tol(0.0, 0.0))))
        problems += check(ctx, case, g)
    assert not problems, "\n".join(problems)


def test_oracle_blur_keeps_a_constant_image() -> None:
    """The oracle's blur is a weighted average: a constant image stays constant, whatever
    the sigma (also when the kernel is wider than the image)."""
    x = torch.full((1, 1, 8, 8), 0.7)
    for sigma in (0.5, 1.0, 4.0, 30.0):
        torch.testing.assert_close(oracle.blur(x, sigma), x, rtol=0, atol=1e-6)
