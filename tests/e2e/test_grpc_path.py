"""TorchServe's own gRPC Predictions with a serialized ExplainRequest in the input map (the path
the gRPC gateway will forward on): no JSON, an ``explain`` marker, and errors carried in the
ExplainReply because TorchServe's gRPC frontend drops per-request statuses."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import torch

from service import wire
from service._proto.explain.v1 import explain_pb2 as pb
from service.attribution import IntegratedGradients
from tests.serving_fixture import load_model as load_fixture_model

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def ts_grpc():
    """Stubs for the part of TorchServe's inference API the gateway calls
    (protos/torchserve/inference_client.proto)."""
    from service._proto.torchserve import inference_client_pb2, inference_client_pb2_grpc

    return inference_client_pb2, inference_client_pb2_grpc


def test_serialized_explain_request_over_torchserve_grpc(server, sources, ts_grpc):
    inference_pb2, inference_grpc = ts_grpc
    x = np.random.default_rng(5).random((1, 8, 8)).astype(np.float32)
    req = pb.ExplainRequest(model="tiny", algorithm="IntegratedGradients",
                            inputs=pb.Input(tensor=wire.tensor_to_proto(x)),
                            target=pb.Target(index=2))
    req.params.update({"n_steps": 20})
    meta = [("authorization", f"Bearer {server.key()}")]
    with grpc.insecure_channel(f"127.0.0.1:{server.ports['grpc_inference']}") as channel:
        stub = inference_grpc.InferenceAPIsServiceStub(channel)
        reply = stub.Predictions(inference_pb2.PredictionsRequest(
            model_name="tiny", input={"explain_request": req.SerializeToString(),
                                      "explain": b"true"}), metadata=meta, timeout=60)
        reply = pb.ExplainReply.FromString(reply.prediction)
        assert reply.WhichOneof("result") == "response"
        e = reply.response.explanations[0]
        assert e.target == 2
        want = IntegratedGradients(load_fixture_model(sources["tiny"])).attribute(
            torch.from_numpy(x)[None], target=2, n_steps=20)
        np.testing.assert_allclose(wire.tensor_from_proto(e.attributions, "a"),
                                   want[0].detach().numpy(), rtol=1e-4, atol=1e-6)
        # without the marker it is a prediction
        reply = stub.Predictions(inference_pb2.PredictionsRequest(
            model_name="tiny", input={"explain_request": req.SerializeToString()}),
            metadata=meta, timeout=60)
        answer = pb.ExplainReply.FromString(reply.prediction).response
        assert answer.prediction.label and not answer.explanations
        # a bad request: TorchServe's gRPC answers OK, the error travels in the reply
        req.algorithm = "Nope"
        reply = stub.Predictions(inference_pb2.PredictionsRequest(
            model_name="tiny", input={"explain_request": req.SerializeToString(),
                                      "explain": b"1"}), metadata=meta, timeout=60)
        err = pb.ExplainReply.FromString(reply.prediction).error
        assert (err.code, err.field, err.grpc_code) == ("UNKNOWN_ALGORITHM", "algorithm",
                                                        "INVALID_ARGUMENT")
        assert "IntegratedGradients" in err.allowed
