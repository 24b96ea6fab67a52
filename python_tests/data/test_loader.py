import pytest
import torch

from bfr_fast.data import InfiniteLoader


def _loader(n=10, batch_size=4, seed=0, drop_last=True, **kwargs):
    x = torch.arange(n, dtype=torch.float32).view(n, 1).expand(n, 3).contiguous()
    return InfiniteLoader(x, torch.arange(n), batch_size, torch.Generator().manual_seed(seed), drop_last=drop_last,
                          **kwargs)


def _epochs(loader, count):
    """The label batches of ``count`` epochs, one list per epoch."""
    return [[next(loader)[1] for _ in range(loader.batches_per_epoch)] for _ in range(count)]


def test_every_sample_once_per_epoch_without_drop_last():
    loader = _loader(drop_last=False)
    assert loader.batches_per_epoch == 3
    for epoch in _epochs(loader, 3):
        assert [len(batch) for batch in epoch] == [4, 4, 2]
        assert sorted(torch.cat(epoch).tolist()) == list(range(10))
    assert loader.epoch == 2


def test_drop_last_keeps_batches_full_and_reshuffles():
    loader = _loader(drop_last=True)
    assert loader.batches_per_epoch == 2
    epochs = _epochs(loader, 4)
    for epoch in epochs:
        seen = torch.cat(epoch)
        assert all(len(batch) == 4 for batch in epoch) and len(set(seen.tolist())) == 8
    assert len({tuple(torch.cat(epoch).tolist()) for epoch in epochs}) == 4  # a new order each epoch


def test_x_and_y_travel_together():
    x, y = next(_loader())
    assert torch.equal(x[:, 0].long(), y) and x.shape == (4, 3)


def test_same_seed_same_stream_other_seed_other_stream():
    streams = [torch.cat(sum(_epochs(_loader(seed=seed), 3), [])) for seed in (5, 5, 6)]
    assert torch.equal(streams[0], streams[1]) and not torch.equal(streams[0], streams[2])


def test_state_dict_resumes_exactly():
    loader = _loader(n=11, batch_size=3)
    for _ in range(5):  # into the middle of the second epoch
        next(loader)
    state = loader.state_dict()
    expected = [next(loader)[1] for _ in range(7)]
    resumed = _loader(n=11, batch_size=3, seed=123)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, next(resumed)[1]) for a in expected)
    assert resumed.epoch == loader.epoch


NO_CUDA = "no CUDA device here: the CUDA case is not run (a GPU machine runs it)"


# "meta" is a device other than the CPU that every machine has: tensors there have shapes but no values.
@pytest.mark.parametrize("device", [
    "meta", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA))])
def test_device_placement(device):
    on_cpu, moved = _loader(seed=3), _loader(seed=3, device=device)
    assert moved.x.device.type == device and moved.y.device.type == device  # moved once, at construction
    for _ in range(5):  # across an epoch boundary: the reshuffled order lives there too
        (x, y), (x_cpu, y_cpu) = next(moved), next(on_cpu)
        assert x.device.type == device and y.device.type == device
        assert x.shape == x_cpu.shape and y.shape == y_cpu.shape
        if device != "meta":
            assert torch.equal(x.cpu(), x_cpu) and torch.equal(y.cpu(), y_cpu)  # the same stream as on the CPU


@pytest.mark.parametrize(("kwargs", "name"), [
    (dict(batch_size=0), "batch_size"),
    (dict(batch_size=11), "batch_size"),
    (dict(n=0, batch_size=1, drop_last=False), "x"),
])
def test_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        _loader(**kwargs)


def test_rejects_length_mismatch_and_bad_generator():
    with pytest.raises(ValueError, match="y"):
        InfiniteLoader(torch.zeros(4, 2), torch.zeros(3), 2, torch.Generator())
    with pytest.raises(ValueError, match="generator"):
        InfiniteLoader(torch.zeros(4, 2), torch.zeros(4), 2, 0)
