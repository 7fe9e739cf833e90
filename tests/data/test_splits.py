"""classes, subset, labeled_per_class, val_fraction, unlabeled_root: stratified and seeded."""

from pathlib import Path

import numpy as np
import pytest

from cvrun.data.samples import HIDDEN
from cvrun.data.splits import build_splits, long_tail_counts, per_class_counts
from cvrun.errors import UserError
from tests.conftest import make_cfg, write_image_tree


def shapes_cfg(**dataset):
    return make_cfg(dataset={"name": "shapes", "train_size": 500, "test_size": 50, "image_size": 16,
                             **dataset}).dataset


def test_classes_keep_and_relabel_in_the_given_order():
    data = build_splits(shapes_cfg(classes=["square", "circle"], val_fraction=0))
    assert data.class_names == ["square", "circle"]
    assert set(data.train.labels.tolist()) == {0, 1} and len(data.train) == 200


def test_unknown_class_lists_the_valid_ones():
    with pytest.raises(UserError, match="unknown class hexagon; classes of shapes: circle, ring"):
        build_splits(shapes_cfg(classes=["hexagon"]))


def test_subset_is_stratified_and_seeded():
    first = build_splits(shapes_cfg(subset=103, val_fraction=0))
    again = build_splits(shapes_cfg(subset=103, val_fraction=0))
    assert len(first.train) == 103
    assert np.array_equal(first.train.images, again.train.images)
    assert sorted(np.bincount(first.train.labels).tolist()) == [20, 20, 21, 21, 21]
    other = build_splits(shapes_cfg(subset=103, val_fraction=0, split_seed=1))
    assert not np.array_equal(first.train.images, other.train.images)


def test_labeled_pool_hides_labels_but_keeps_them_for_scoring():
    data = build_splits(shapes_cfg(labeled_per_class=20, val_fraction=0.25))
    assert len(data.train) + len(data.val) == 100
    assert np.bincount(data.val.labels).tolist() == [5] * 5
    assert len(data.unlabeled) == 400
    assert (data.unlabeled.labels == HIDDEN).all()
    assert (data.unlabeled.true_labels >= 0).all() and np.bincount(data.unlabeled.true_labels).tolist() == [80] * 5
    # No image is both labeled and in the pool.
    labeled = {im.tobytes() for im in np.concatenate([data.train.images, data.val.images])}
    assert not labeled & {im.tobytes() for im in data.unlabeled.images}


def test_unlabeled_root_joins_the_pool(tmp_path):
    folder = write_image_tree(tmp_path / "extra", {"x": 4}, test_per_class=1, size=16)
    data = build_splits(shapes_cfg(labeled_per_class=50, unlabeled_root=str(folder)))
    assert len(data.unlabeled) == 250 + 5
    assert (data.unlabeled.labels == HIDDEN).all() and (data.unlabeled.true_labels[-5:] == HIDDEN).all()
    assert data.unlabeled.images.shape[1:] == (16, 16, 3)


def test_val_split_from_an_image_tree(image_tree):
    data = build_splits(make_cfg(dataset={"name": "imagefolder", "root": str(image_tree), "image_size": 12,
                                          "val_fraction": 0.2}).dataset)
    assert np.bincount(data.val.labels).tolist() == [2, 2, 2] and len(data.train) == 24


def test_per_class_counts_sum_to_the_total():
    counts = per_class_counts(np.array([0] * 50 + [1] * 30 + [2] * 20), 11)
    assert sum(counts.values()) == 11 and counts == {0: 6, 1: 3, 2: 2}


def test_a_record_names_each_splits_images_and_what_changed():
    from cvrun.data.samples import Samples
    from cvrun.data.splits import split_changes, split_record

    samples = Samples.from_paths([f"/d/train/{c}/{i}.png" for c in "ab" for i in range(3)], np.repeat([0, 1], 3),
                                 Path("/d"))
    record = {"train": split_record(samples, ["a", "b"])}
    assert record["train"]["images"] == 6 and record["train"]["per_class"] == {"a": 3, "b": 3}
    same_elsewhere = Samples.from_paths([f"/e/train/{c}/{i}.png" for c in "ab" for i in range(3)],
                                        np.repeat([0, 1], 3), Path("/e"))
    assert split_record(same_elsewhere, ["a", "b"]) == record["train"]  # moving the tree changes nothing
    relabelled = split_record(samples.take(np.arange(5)), ["a", "b"])
    assert split_changes(record, {"train": relabelled}) == ["train/b has 1 fewer image"]
    swapped = samples.take(np.array([1, 0, 2, 3, 4, 5]))
    assert split_changes(record, {"train": split_record(swapped, ["a", "b"])}) == [
        "train has as many images per class but other images, labels or order"]
    assert split_changes(record, {**record, "val": relabelled}) == ["there is a new val split"]


def test_an_unlabeled_root_with_copies_of_test_images_is_refused_naming_count_and_example(tmp_path):
    root = write_image_tree(tmp_path / "tree", {"cat": 6, "dog": 6})
    extra = tmp_path / "extra"
    extra.mkdir()
    for i, image in enumerate(sorted((root / "test" / "dog").iterdir())[:2]):
        (extra / f"copy{i}.png").write_bytes(image.read_bytes())
    write_image_tree(tmp_path / "other", {"x": 2}, test_per_class=1, size=20)  # other images: kept apart
    (tmp_path / "other" / "train" / "x" / "0000.png").rename(extra / "new.png")
    cfg = make_cfg(dataset={"name": "imagefolder", "root": str(root), "unlabeled_root": str(extra),
                            "cache": "disk", "cache_dir": str(tmp_path / "cache")}).dataset
    with pytest.raises(UserError, match=r"unlabeled_root=.*extra overlaps the test split: 2 of its images are test "
                                        r"images \(.*copy0.png has the bytes of .*test/dog/0000.png\)"):
        build_splits(cfg)


def test_an_unlabeled_root_holding_the_images_held_out_for_validation_is_refused(tmp_path):
    root = write_image_tree(tmp_path / "tree", {"cat": 6, "dog": 6})
    cfg = make_cfg(dataset={"name": "imagefolder", "root": str(root), "unlabeled_root": str(root / "train"),
                            "val_fraction": 0.5}).dataset
    with pytest.raises(UserError, match="overlaps the validation split: 6 of its images are validation images"):
        build_splits(cfg)


# issue 25: imbalance
def test_the_long_tail_profile_keeps_5000_down_to_50_images_over_10_classes():
    """Cui et al. 2019's CIFAR-10-LT at ratio 100: n_c = int(5000 x 0.01^(c / 9))."""
    counts = long_tail_counts(np.repeat(np.arange(10), 5000), 10, 100)
    assert list(counts.values()) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert sum(counts.values()) == 12406
    # A class smaller than its share keeps what it has; every class keeps at least one image.
    uneven = np.array([0] * 10 + [1] * 2 + [2] * 10)
    assert long_tail_counts(uneven, 3, 4) == {0: 10, 1: 2, 2: 2}  # class 1's share would be 5
    assert long_tail_counts(uneven, 3, 1000) == {0: 10, 1: 1, 2: 1}


def test_an_imbalance_ratio_cuts_the_training_split_seeded_and_leaves_the_test_split():
    plain = build_splits(shapes_cfg(val_fraction=0))
    tail = build_splits(shapes_cfg(val_fraction=0, imbalance_ratio=10))
    assert np.bincount(plain.train.labels).tolist() == [100] * 5
    assert np.bincount(tail.train.labels).tolist() == [100, 56, 31, 17, 10]  # 100 x 0.1^(c / 4)
    assert tail.record["test"] == plain.record["test"]
    again = build_splits(shapes_cfg(val_fraction=0, imbalance_ratio=10))
    other = build_splits(shapes_cfg(val_fraction=0, imbalance_ratio=10, split_seed=1))
    assert again.record["train"] == tail.record["train"] and other.record["train"] != tail.record["train"]
    held = build_splits(shapes_cfg(imbalance_ratio=10))  # the validation images are a tenth of each class
    assert np.bincount(held.val.labels).tolist() == [10, 5, 3, 2, 1]


def test_the_long_tailed_cifar10_preset_composes():
    from hydra import compose, initialize_config_dir

    from cvrun.commands import register_schemas
    from cvrun.config import TrainConfig, validate
    from cvrun.paths import config_dir

    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = validate(compose(config_name="train", overrides=["experiment=cifar10_lt100"]), TrainConfig)
    assert (cfg.dataset.name, cfg.dataset.imbalance_ratio, cfg.model.name) == ("cifar10", 100, "lenet5")
    assert cfg.trainer.monitor == "val_balanced_acc1" and cfg.dataset.sampler == "none"
