import numpy as np
import torch

from cvrun.augment import build_train_transform
from cvrun.data.loaders import make_loader
from cvrun.data.samples import Samples
from tests.conftest import make_cfg


def _samples(n=40, size=16):
    rng = np.random.default_rng(0)
    return Samples.from_arrays(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), np.arange(n) % 4)


def _batches(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return [(x.clone(), y.clone()) for x, y in loader]


def test_batches_are_uint8_chw_and_independent_of_workers():
    transform = build_train_transform(make_cfg().aug, 16)
    kwargs = dict(image_size=16, batch_size=8, train=True, seed=5, transform=transform)
    in_process = _batches(make_loader(_samples(), num_workers=0, **kwargs), epoch=1)
    with_worker = _batches(make_loader(_samples(), num_workers=1, **kwargs), epoch=1)
    images, labels = in_process[0]
    assert images.dtype == torch.uint8 and images.shape == (8, 3, 16, 16) and labels.dtype == torch.int64
    for (a, la), (b, lb) in zip(in_process, with_worker):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_each_epoch_has_its_own_order_and_evaluation_keeps_order():
    loader = make_loader(_samples(), 16, 8, train=True, seed=5, num_workers=0)
    assert not torch.equal(_batches(loader, 0)[0][1], _batches(loader, 1)[0][1])
    plain = make_loader(_samples(), 16, 8, train=False, seed=5, num_workers=0)
    labels = torch.cat([y for _, y in plain])
    assert labels.tolist() == (np.arange(40) % 4).tolist()


def test_automatic_workers_where_they_pay(monkeypatch):
    from cvrun.data.loaders import auto_workers

    monkeypatch.setattr("os.cpu_count", lambda: 16)
    in_memory = _samples()
    files = Samples.from_paths(["a.png", "b.png"], np.array([0, 1]))
    assert auto_workers(in_memory, None, augmented=True, cuda=False) == 0  # CPU training: no IPC per batch
    assert auto_workers(in_memory, None, augmented=False, cuda=True) == 0  # plain evaluation batches
    assert auto_workers(in_memory, None, augmented=True, cuda=True) == 8  # augmentation beside the GPU
    assert auto_workers(files, None, augmented=False, cuda=False) == 8  # decoding files
    assert auto_workers(files, 3, augmented=False, cuda=False) == 3  # trainer.num_workers wins
    loader = make_loader(in_memory, 16, 8, train=True, seed=0, transform=lambda im, rng: im, cuda=True)
    assert loader.num_workers == 8 and loader.pin_memory and loader.persistent_workers and loader.prefetch_factor == 4
