"""Storage formats of pruned networks: exact round trips, identical outputs, sizes in the expected order.

The network is BCQ's actor shape on HalfCheetah (23 -> 400 -> 300 -> 6, the paper's Table 1 row), pruned
at 95% with random masks; lossless formats must give back the very same tensors, the fp16 formats exactly
the fp16-rounded ones, and a model loaded from any blob the same outputs as its reference model.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers.pruning import (
    LOSSLESS_FORMATS,
    STORAGE_FORMATS,
    apply_masks,
    decode_weights,
    decoded_reference,
    effective_weights,
    encode_weights,
    pruned_state_dict,
    random_masks,
    sparse_inference_copy,
    storage_size,
)


def actor() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(23, 400), nn.ReLU(), nn.Linear(400, 300), nn.ReLU(), nn.Linear(300, 6), nn.Tanh())


@pytest.fixture(scope="module")
def sparse_actor() -> nn.Sequential:
    model = actor()
    apply_masks(model, random_masks(model, 0.05, torch.Generator().manual_seed(0)))
    return model


def outputs(weights: dict[str, torch.Tensor]) -> torch.Tensor:
    model = actor()
    model.load_state_dict(weights)
    return model(torch.randn(64, 23, generator=torch.Generator().manual_seed(3)))


def test_pruned_state_dict_has_plain_names_and_effective_weights(sparse_actor):
    sd = pruned_state_dict(sparse_actor)
    assert sorted(sd) == sorted(actor().state_dict())  # the unpruned names (order within a layer may differ)
    eff = effective_weights(sparse_actor)
    assert all(torch.equal(sd[k], eff[k]) for k in eff)
    assert 0.049 < float((sd["2.weight"] != 0).float().mean()) < 0.051


@pytest.mark.parametrize("fmt", STORAGE_FORMATS)
def test_round_trip_identical_weights_and_outputs(sparse_actor, fmt):
    sd = pruned_state_dict(sparse_actor)
    decoded = decode_weights(encode_weights(sd, fmt))
    reference = decoded_reference(sd, fmt)
    assert list(decoded) == list(sd)
    for k in sd:
        assert decoded[k].dtype == sd[k].dtype and decoded[k].shape == sd[k].shape
        assert torch.equal(decoded[k], reference[k]), k
    assert torch.equal(outputs(decoded), outputs(reference))
    if fmt in LOSSLESS_FORMATS:
        assert all(torch.equal(reference[k], sd[k]) for k in sd)
    else:  # fp16 really rounds: the outputs differ from the fp32 model's, a little
        assert not torch.equal(reference["2.weight"], sd["2.weight"])
        torch.testing.assert_close(outputs(reference), outputs(sd), rtol=0, atol=2e-3)


@pytest.mark.parametrize("fmt", STORAGE_FORMATS)
def test_round_trip_of_a_dense_net_and_odd_tensors(fmt):
    sd = {"w": torch.randn(5, 7), "conv": torch.randn(3, 2, 3, 3), "b": torch.zeros(4), "n": torch.tensor(7),
          "empty": torch.zeros(0, 3), "count": torch.arange(10, dtype=torch.int64)}
    sd["conv"][0] = 0
    decoded = decode_weights(encode_weights(sd, fmt))
    reference = decoded_reference(sd, fmt)
    assert all(torch.equal(decoded[k], reference[k]) and decoded[k].dtype == sd[k].dtype for k in sd)


def test_sizes_against_dense(sparse_actor):
    dense_net = pruned_state_dict(actor())
    sd = pruned_state_dict(sparse_actor)
    dense = storage_size(dense_net, "dense")
    assert 520_000 < dense < 535_000  # 131,706 fp32 parameters: the paper's 0.5287 MB for HalfCheetah's actor
    # COO of a dense network is larger than dense (paper: 2.63 vs 0.53 MB, about 5x)
    assert 4.5 < storage_size(dense_net, "coo") / dense < 5.1
    # compact formats never lose much against dense on a dense network (a dense tensor is stored raw)
    for fmt in ("csr", "bitmask", "bitmask-lzma"):
        assert storage_size(dense_net, fmt) < 1.01 * dense
    sizes = {fmt: storage_size(sd, fmt) for fmt in STORAGE_FORMATS}
    assert 3.3 < dense / sizes["coo"] < 4.2  # the paper's "about 4x" at 95%
    for fmt in ("csr", "bitmask", "csr-fp16", "bitmask-fp16", "bitmask-lzma", "bitmask-fp16-lzma"):
        assert sizes[fmt] < sizes["coo"] / 2, fmt
    for fmt in ("csr-fp16", "bitmask-fp16", "bitmask-fp16-lzma"):
        assert dense / sizes[fmt] >= 15, (fmt, dense / sizes[fmt])
    assert sizes["bitmask-lzma"] < sizes["bitmask"] and sizes["bitmask-fp16-lzma"] < sizes["bitmask-fp16"]


def test_sparse_inference_copy_matches_dense(sparse_actor):
    fast = sparse_inference_copy(sparse_actor)
    x = torch.randn(32, 23)
    assert fast[2].weight.layout == torch.sparse_csr and int(fast[2].weight._nnz()) == 6000
    torch.testing.assert_close(fast(x), sparse_actor(x), rtol=1e-5, atol=1e-6)
    assert sparse_actor[2].weight_mask is not None  # the original keeps its masks


def test_bad_arguments():
    sd = {"w": torch.randn(3, 3)}
    with pytest.raises(ValueError, match="fmt"):
        encode_weights(sd, "zip")
    with pytest.raises(ValueError, match="weights"):
        encode_weights({}, "dense")
    with pytest.raises(ValueError, match="weights"):
        encode_weights(actor(), "dense")
    with pytest.raises(ValueError, match="pruned_state_dict"):
        encode_weights({"w_orig": torch.ones(2), "w_mask": torch.ones(2)}, "csr")
    with pytest.raises(ValueError, match="weights"):
        encode_weights({"w": torch.ones(3, 3).to_sparse()}, "csr")
    with pytest.raises(ValueError, match="fp16"):
        encode_weights({"w": torch.tensor([1e6, 0.0])}, "bitmask-fp16")
    with pytest.raises(ValueError, match="blob"):
        decode_weights(b"not a blob")
    with pytest.raises(ValueError, match="blob"):
        decode_weights(encode_weights(sd, "bitmask")[:-3])
    with pytest.raises(ValueError, match="blob"):
        decode_weights("text")
    with pytest.raises(ValueError, match="fmt"):
        storage_size(sd, None)
