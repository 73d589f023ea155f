"""Tests of the data layer: readers, augmentation, loader, errors. All small and fast."""
from __future__ import annotations

import io
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mcmi.data import (
    CIFAR10_CLASSES,
    CropFlipParams,
    DataError,
    ImageDataset,
    LazyImageFolder,
    Normalize,
    RandomCropFlip,
    RandomResizedCropFlip,
    ResizedCropParams,
    TensorLoader,
    apply_crop_flip,
    apply_resized_crop,
    compute_stats,
    dataset_stats,
    find_bundled,
    load_cifar10,
    load_cifar100,
    load_dataset,
    load_image_folder,
    load_npz,
    normalize,
    random_crop_flip,
    sample_crop_flip,
    sample_resized_crop,
)

# ----------------------------------------------------------------------------- fixtures


def _dump(path: Path, obj: dict, byte_keys: bool) -> None:
    if byte_keys:  # what Python 3 sees of the official Python 2 pickles with encoding="bytes"
        obj = {k.encode(): v for k, v in obj.items()}
    path.write_bytes(pickle.dumps(obj, protocol=2))


def make_cifar10(parent: Path, n: int = 4, byte_keys: bool = True, seed: int = 0) -> dict:
    """A tiny CIFAR-10 folder: 5 train batches of n images and a test batch of n."""
    rng = np.random.default_rng(seed)
    folder = parent / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        _dump(folder / name, {"batch_label": name, "data": data, "labels": labels,
                              "filenames": [f"{i}.png" for i in range(n)]}, byte_keys)
        batches[name] = (data, labels)
    _dump(folder / "batches.meta", {"label_names": CIFAR10_CLASSES, "num_cases_per_batch": n,
                                    "num_vis": 3072}, byte_keys)
    return batches


def make_cifar100(parent: Path, n: int = 6, byte_keys: bool = False) -> dict:
    rng = np.random.default_rng(1)
    folder = parent / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for name in ("train", "test"):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, n).tolist()
        coarse = rng.integers(0, 20, n).tolist()
        _dump(folder / name, {"data": data, "fine_labels": fine, "coarse_labels": coarse},
              byte_keys)
        out[name] = (data, fine, coarse)
    fine_names = [f"fine{i}" for i in range(100)]
    _dump(folder / "meta", {"fine_label_names": fine_names,
                            "coarse_label_names": [f"coarse{i}" for i in range(20)]}, byte_keys)
    return out


COLORS = {"cat": (200, 30, 40), "dog": (20, 180, 60), "emu": (10, 20, 230)}


def make_folder(root: Path, size: int = 12) -> Path:
    """root/{train,val}/<class>/ with solid-colour PNG and JPEG images."""
    for split, count in (("train", 3), ("val", 2)):
        for cls, color in COLORS.items():
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(count):
                im = Image.new("RGB", (size + 4 * i, size), color)
                ext = "JPEG" if i % 2 else "png"
                im.save(d / f"{cls}_{i}.{ext}", format="JPEG" if ext == "JPEG" else "PNG")
            (d / "notes.txt").write_text("not an image")
    return root


def tiny_dataset(n: int = 10, size: int = 8, name: str = "tiny") -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    return ImageDataset(images, torch.arange(n) % 3, ["a", "b", "c"], name)


# ----------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("byte_keys", [True, False])
def test_cifar10_reads_pickles(tmp_path, byte_keys):
    batches = make_cifar10(tmp_path, byte_keys=byte_keys)
    train = load_cifar10(tmp_path, "train")                       # the parent folder
    test = load_cifar10(tmp_path / "cifar-10-batches-py", "test")  # the folder itself
    assert train.images.shape == (20, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.images.is_contiguous() and train.labels.dtype == torch.int64
    data = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = [y for i in range(1, 6) for y in batches[f"data_batch_{i}"][1]]
    # pixel (c, r, col) of image k is data[k, c * 1024 + r * 32 + col]
    k, c, r, col = 7, 2, 5, 30
    assert int(train.images[k, c, r, col]) == int(data[k, c * 1024 + r * 32 + col])
    assert torch.equal(train.images.reshape(20, -1), torch.from_numpy(data))
    assert train.labels.tolist() == labels
    assert train.classes == CIFAR10_CLASSES and train.num_classes == 10
    assert train.name == "cifar10" and len(test) == 4
    assert test.labels.tolist() == batches["test_batch"][1]


def test_cifar100_fine_and_coarse(tmp_path, monkeypatch):
    ref = make_cifar100(tmp_path)
    monkeypatch.setenv("MCMI_DATA_DIR", str(tmp_path))
    test = load_dataset("cifar100", "test")
    assert test.num_classes == 100 and test.classes[3] == "fine3"
    assert test.labels.tolist() == ref["test"][1]
    assert torch.equal(test.images.reshape(6, -1), torch.from_numpy(ref["test"][0]))
    coarse = load_cifar100(tmp_path / "cifar-100-python", "train", label_type="coarse")
    assert coarse.num_classes == 20 and coarse.labels.tolist() == ref["train"][2]
    assert load_dataset("cifar100", "val", root=tmp_path).labels.tolist() == ref["test"][1]


def test_cifar_errors_name_the_path(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=r"no CIFAR-100 pickles in .*train, test, meta"
                                        r".*cifar-100-python") as e:
        load_cifar100(tmp_path, "train")
    assert str(tmp_path) in str(e.value)
    with pytest.raises(DataError, match=r"data_batch_1\.\.data_batch_5"):
        load_dataset("cifar10", "train", root=tmp_path)
    monkeypatch.delenv("MCMI_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="MCMI_DATA_DIR"):
        load_dataset("cifar10", "train")

    make_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_3").write_bytes(b"\x80\x02garbage")  # corrupt pickle
    with pytest.raises(DataError, match=r"corrupt CIFAR pickle .*data_batch_3"):
        load_cifar10(tmp_path, "train")
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing data_batch_3"):
        load_cifar10(tmp_path, "train")

    # labels out of range
    _dump(folder / "test_batch", {"data": np.zeros((2, 3072), np.uint8), "labels": [1, 12]},
          True)
    with pytest.raises(DataError, match=r"labels out of range in .*test_batch"):
        load_cifar10(folder, "test")
    # wrong data shape
    _dump(folder / "test_batch", {"data": np.zeros((2, 100), np.uint8), "labels": [1, 2]}, True)
    with pytest.raises(DataError, match=r"test_batch.*\(N, 3072\)"):
        load_cifar10(folder, "test")
    # a pickle that would run code is refused
    (folder / "test_batch").write_bytes(pickle.dumps({"data": print}))
    with pytest.raises(DataError, match="test_batch"):
        load_cifar10(folder, "test")


# ----------------------------------------------------------------------------- folders


def test_image_folder_eager_and_lazy(tmp_path):
    root = make_folder(tmp_path / "imgs")
    train = load_image_folder(root, "train", image_size=8)
    assert isinstance(train, ImageDataset)
    assert train.classes == ["cat", "dog", "emu"] and len(train) == 9
    assert train.images.shape == (9, 3, 8, 8) and train.images.dtype == torch.uint8
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for k in range(9):
        color = torch.tensor(COLORS[train.classes[int(train.labels[k])]])
        err = (train.images[k].float().mean((1, 2)) - color).abs().max()
        assert err < 6  # exact for PNG, close for JPEG
    val = load_dataset("imagefolder", "val", root=root, image_size=(6, 10))
    assert val.images.shape == (6, 3, 6, 10) and val.classes == train.classes

    lazy = load_image_folder(root, "train", image_size=8, lazy=True)
    assert isinstance(lazy, LazyImageFolder) and len(lazy) == 9 and lazy.num_classes == 3
    assert torch.equal(lazy.get_images(torch.tensor([4, 0])), train.images[[4, 0]])
    assert torch.equal(lazy.labels, train.labels)
    # rows and merged classes of a lazy folder stay lazy and read the same files
    part = lazy.subset([8, 1, 4])
    assert isinstance(part, LazyImageFolder) and part.labels.tolist() == [2, 0, 1]
    assert torch.equal(part.get_images([0, 1, 2]), train.images[[8, 1, 4]])
    from mcmi.experiments.train import DataSpec, reduce_training_set, regroup_classes

    two = regroup_classes(lazy, [[2], [0, 1]])
    assert isinstance(two, LazyImageFolder) and two.classes == ["emu", "cat+dog"]
    assert two.labels.tolist() == [1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert torch.equal(two.get_images(list(range(9))), train.images)
    few, _ = reduce_training_set(DataSpec(train_fraction=1 / 3, fraction_mode="stratified"), lazy)
    assert isinstance(few, LazyImageFolder) and sorted(few.labels.tolist()) == [0, 1, 2]
    with pytest.raises(DataError, match="labels out of range"):
        lazy.relabeled(torch.full((9,), 3), ["a", "b", "c"])
    auto = load_image_folder(root, "train", image_size=8, max_memory_bytes=100)
    assert isinstance(auto, LazyImageFolder)
    batches = list(TensorLoader(auto, 4, shuffle=True, augment=True, seed=0))
    assert sorted(torch.cat([b["index"] for b in batches]).tolist()) == list(range(9))
    auto.close()


def test_image_folder_keeps_aspect_by_centre_crop(tmp_path):
    d = tmp_path / "r" / "train" / "x"
    d.mkdir(parents=True)
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (20, 0, 40, 20))  # left half red, right half blue
    im.save(d / "a.png")
    ds = load_image_folder(tmp_path / "r", "train", image_size=8)
    assert ds.images[0, :, 4, 0].tolist() == [255, 0, 0]
    assert ds.images[0, :, 4, 7].tolist() == [0, 0, 255]


def test_image_folder_errors(tmp_path):
    root = make_folder(tmp_path / "imgs")
    with pytest.raises(DataError, match="image folder not found"):
        load_image_folder(tmp_path / "nope", "train")
    bad = root / "train" / "dog" / "broken.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(DataError, match=r"broken\.JPEG"):
        load_image_folder(root, "train", image_size=8)
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, format="JPEG")
    bad.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # truncated JPEG
    with pytest.raises(DataError, match=r"broken\.JPEG"):
        load_image_folder(root, "train", image_size=8, lazy=True).get_images([3, 4, 5])
    bad.unlink()
    (root / "train" / "fox").mkdir()
    with pytest.raises(DataError, match=r"empty class folder .*fox"):
        load_image_folder(root, "train", image_size=8)
    with pytest.raises(DataError, match=r"no train folder in .*train/<class>"):
        load_image_folder(root / "val", "train")
    (root / "val" / "yak").mkdir()
    with pytest.raises(DataError, match="yak"):
        load_image_folder(root, "val", image_size=8)


# ----------------------------------------------------------------------------- npz


def test_npz_loader(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 4, 6, 3), dtype=np.uint8)  # NHWC
    path = tmp_path / "toy.npz"
    np.savez_compressed(path, x_train=x, y_train=np.array([0, 1, 2, 1, 0], np.int16),
                        x_test=x[:2], y_test=np.array([2, 2], np.int16),
                        class_names=np.array(["r", "g", "b"]))
    ds = load_dataset("npz", "train", root=path)
    assert ds.images.shape == (5, 3, 4, 6) and ds.images.is_contiguous()
    assert int(ds.images[3, 1, 2, 5]) == int(x[3, 2, 5, 1])
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == [0, 1, 2, 1, 0]
    assert ds.classes == ["r", "g", "b"] and ds.name == "toy"
    assert load_npz(path, "test").labels.tolist() == [2, 2]

    np.savez(tmp_path / "nolabels.npz", x_train=x)
    with pytest.raises(DataError, match=r"nolabels.npz.*missing keys \['y_train'\]"):
        load_npz(tmp_path / "nolabels.npz", "train")
    np.savez(tmp_path / "range.npz", x_train=x, y_train=np.array([0, 1, 5, 1, 0]),
             class_names=np.array(["a", "b"]))
    with pytest.raises(DataError, match=r"labels out of range in .*range.npz"):
        load_npz(tmp_path / "range.npz", "train")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"junk\.npz"):
        load_npz(tmp_path / "junk.npz")
    with pytest.raises(DataError, match=r"absent\.npz"):
        load_npz(tmp_path / "absent.npz")
    np.savez(tmp_path / "gray.npz", x_train=x[..., 0], y_train=np.zeros(5, int))
    with pytest.raises(DataError, match=r"gray.npz.*uint8 \(N, H, W, 3\)"):
        load_npz(tmp_path / "gray.npz")


def test_bundled_cifar10_partial():
    try:
        path = find_bundled("cifar10-partial")
    except DataError:
        pytest.skip("shared data not available")
    ds = load_npz(path, "test", name="cifar10-partial")
    assert ds.images.shape[1:] == (3, 32, 32) and len(ds) > 1000
    assert ds.classes == CIFAR10_CLASSES and 0 <= int(ds.labels.min()) <= int(ds.labels.max()) < 10
    assert torch.bincount(ds.labels, minlength=10).min() > 50
    assert dataset_stats("cifar10-partial").mean[0] == pytest.approx(0.4914)


def test_missing_bundled_names_the_places(monkeypatch, tmp_path):
    with pytest.raises(DataError, match=str(tmp_path)):
        load_dataset("tinyimagenet100-32px", "test", root=tmp_path)
    with pytest.raises(KeyError, match="cifar100-partial"):
        load_dataset("cifar1000", "train")


def test_stats():
    assert dataset_stats("cifar100").std == pytest.approx((0.2675, 0.2565, 0.2761))
    assert dataset_stats("imagenet").mean == pytest.approx((0.485, 0.456, 0.406))
    ds = tiny_dataset(6, 5)
    x = ds.images.double() / 255
    mean, std = dataset_stats(ds)
    assert mean == pytest.approx(x.mean((0, 2, 3)).tolist())
    pixels = x.permute(1, 0, 2, 3).reshape(3, -1)
    assert std == pytest.approx(pixels.std(1, unbiased=False).tolist())
    batched, whole = compute_stats(ds, batch_size=4), compute_stats(ds)
    assert batched.mean == pytest.approx(whole.mean) and batched.std == pytest.approx(whole.std)


# ----------------------------------------------------------------------------- augmentation


def test_crop_moves_a_known_pixel():
    x = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    x[:, :, 2, 5] = 200
    p = CropFlipParams(top=torch.tensor([1, 4]), left=torch.tensor([7, 2]),
                       flip=torch.tensor([False, False]), padding=4)
    y = apply_crop_flip(x, p)
    # output (i, j) reads padded (top + i, left + j) = source (top + i - 4, left + j - 4)
    assert y[0].nonzero().tolist() == [[c, 2 + 4 - 1, 5 + 4 - 7] for c in range(3)]
    assert y[1].nonzero().tolist() == [[c, 2, 5 + 4 - 2] for c in range(3)]
    # shifted-in border is zero padding
    p0 = CropFlipParams(torch.tensor([0]), torch.tensor([0]), torch.tensor([False]), 4)
    full = torch.full((1, 3, 8, 8), 9, dtype=torch.uint8)
    z = apply_crop_flip(full, p0)
    assert z[..., :4, :].eq(0).all() and z[..., :, :4].eq(0).all() and z[..., 4:, 4:].eq(9).all()


def test_flip_reverses_columns_and_centre_crop_is_identity():
    x = torch.randint(0, 256, (3, 3, 6, 7), dtype=torch.uint8)
    centre = torch.full((3,), 2)
    flip = CropFlipParams(centre, centre, torch.tensor([True, False, True]), padding=2)
    y = apply_crop_flip(x, flip)
    assert torch.equal(y[0], x[0].flip(-1)) and torch.equal(y[1], x[1])
    assert torch.equal(y[2], x[2].flip(-1))


def test_normalize_formula_dtype_and_layout():
    x = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    y = normalize(x, mean, std)
    m = torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
    ref = (x.double() / 255 - m) / s
    assert y.dtype == torch.float32 and torch.allclose(y.double(), ref, atol=1e-5)
    assert torch.allclose(normalize(x, mean, std, dtype=torch.float64), ref, atol=1e-10)
    cl = normalize(x, mean, std, dtype=torch.bfloat16, channels_last=True)
    assert cl.dtype == torch.bfloat16 and cl.is_contiguous(memory_format=torch.channels_last)


def test_augmentation_is_deterministic_and_replayable():
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    a = random_crop_flip(x, generator=torch.Generator().manual_seed(3))
    b = random_crop_flip(x, generator=torch.Generator().manual_seed(3))
    c = random_crop_flip(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    params = sample_crop_flip(16, generator=torch.Generator().manual_seed(3))
    assert torch.equal(apply_crop_flip(x, params), a)
    assert params.top.min() >= 0 and params.top.max() <= 8 and params.flip.dtype == torch.bool
    stored = CropFlipParams.from_dict(params.to_dict())
    assert torch.equal(apply_crop_flip(x[4:6], stored[4:6]), a[4:6])

    for t in (RandomCropFlip((0.5,) * 3, (0.25,) * 3),
              RandomResizedCropFlip((0.5,) * 3, (0.25,) * 3, size=24)):
        out = t(x, torch.Generator().manual_seed(9))
        p = t.sample(16, 32, 32, torch.Generator().manual_seed(9))
        assert torch.equal(out, t.apply(x, p))
        cl = t(x, torch.Generator().manual_seed(9), channels_last=True)
        assert cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(cl, out)


def test_resized_crop_geometry():
    x = torch.randint(0, 256, (2, 3, 10, 12), dtype=torch.uint8)
    full = ResizedCropParams(torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long),
                             torch.full((2,), 10), torch.full((2,), 12),
                             torch.tensor([False, True]))
    y = apply_resized_crop(x, full, (10, 12))
    assert torch.allclose(y[0], x[0].float(), atol=1e-3)
    assert torch.allclose(y[1], x[1].float().flip(-1), atol=1e-3)
    box = ResizedCropParams(torch.tensor([3, 1]), torch.tensor([2, 5]), torch.tensor([4, 4]),
                            torch.tensor([4, 4]), torch.tensor([False, False]))
    z = apply_resized_crop(x, box, 4)
    assert torch.allclose(z[0], x[0, :, 3:7, 2:6].float(), atol=1e-3)
    assert torch.allclose(z[1], x[1, :, 1:5, 5:9].float(), atol=1e-3)

    g = torch.Generator().manual_seed(0)
    p = sample_resized_crop(500, 40, 60, generator=g)
    assert (p.top >= 0).all() and (p.left >= 0).all()
    assert (p.top + p.height <= 40).all() and (p.left + p.width <= 60).all()
    frac = (p.height * p.width).double() / 2400
    assert frac.min() > 0.06 and frac.max() <= 1.0 + 1e-9
    q = sample_resized_crop(500, 40, 60, generator=torch.Generator().manual_seed(0))
    assert torch.equal(p.top, q.top) and torch.equal(p.width, q.width)
    # impossible scale -> centre-crop fallback with the ratio clamped
    f = sample_resized_crop(3, 10, 40, scale=(2.0, 3.0), generator=g)
    assert f.height.tolist() == [10] * 3 and f.width.tolist() == [13] * 3
    assert f.left.tolist() == [13] * 3 and f.top.tolist() == [0] * 3


# ----------------------------------------------------------------------------- loader


def test_loader_covers_each_index_once_and_matches_data():
    ds = tiny_dataset(23)
    loader = TensorLoader(ds, 5, shuffle=True, augment=False, seed=1)
    assert len(loader) == 5
    batches = list(loader)
    idx = torch.cat([b["index"] for b in batches])
    assert sorted(idx.tolist()) == list(range(23)) and idx.tolist() != list(range(23))
    mean, std = dataset_stats(ds)
    for b in batches:
        assert b["image"].dtype == torch.float32 and b["label"].dtype == torch.int64
        assert torch.equal(b["label"], ds.labels[b["index"]])
        assert torch.allclose(b["image"], normalize(ds.images[b["index"]], mean, std))
    dropped = TensorLoader(ds, 5, drop_last=True)
    assert len(dropped) == 4 and len(list(dropped)) == 4
    assert [len(b["index"]) for b in dropped] == [5] * 4


def test_loader_order_is_reproducible_per_epoch():
    ds = tiny_dataset(30)

    def order(loader, epoch):
        loader.set_epoch(epoch)
        return torch.cat([b["index"] for b in loader]).tolist()

    a, b = TensorLoader(ds, 7, shuffle=True, seed=5), TensorLoader(ds, 7, shuffle=True, seed=5)
    e0, e1 = order(a, 0), order(a, 1)
    assert e0 != e1 and order(b, 1) == e1 and order(b, 0) == e0 and order(a, 0) == e0
    assert order(TensorLoader(ds, 7, shuffle=True, seed=6), 0) != e0
    assert a.epoch_order(1).tolist() == e1
    aug = [TensorLoader(ds, 7, shuffle=True, augment=True, seed=5) for _ in range(2)]
    for x, y in zip(*aug, strict=True):
        assert torch.equal(x["image"], y["image"])


@pytest.mark.parametrize("n,world", [(10, 3), (12, 4), (5, 2)])
def test_loader_ddp_shards(n, world):
    ds = tiny_dataset(n)
    shards = []
    for rank in range(world):
        loader = TensorLoader(ds, 2, shuffle=True, seed=3, rank=rank, world_size=world)
        loader.set_epoch(2)
        shards.append(torch.cat([b["index"] for b in loader]).tolist())
    per = math.ceil(n / world)
    assert all(len(s) == per for s in shards)
    flat = [i for s in shards for i in s]
    assert sorted(set(flat)) == list(range(n))
    assert len(flat) - len(set(flat)) == per * world - n  # only the padding repeats
    # unshuffled shards are exactly torch's DistributedSampler
    from torch.utils.data import DistributedSampler

    for rank in range(world):
        ref = list(DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False))
        mine = TensorLoader(ds, 100, rank=rank, world_size=world).epoch_order().tolist()
        assert mine == ref


def test_loader_subset_indices_and_masks():
    ds = tiny_dataset(12)
    sub = TensorLoader(ds, 4, shuffle=True, indices=[1, 5, 7, 11])
    assert sorted(torch.cat([b["index"] for b in sub]).tolist()) == [1, 5, 7, 11]
    mask = ds.labels == 2
    masked = TensorLoader(ds, 3, indices=mask)
    got = torch.cat([b["index"] for b in masked])
    assert torch.equal(got, mask.nonzero().reshape(-1))
    with pytest.raises(ValueError):
        TensorLoader(ds, 3, indices=[0, 12])


def test_loader_resume_mid_epoch():
    ds = tiny_dataset(40, size=16)
    kw = {"batch_size": 6, "shuffle": True, "augment": True, "seed": 11, "return_params": True}
    first = TensorLoader(ds, **kw)
    first.set_epoch(3)
    it = iter(first)
    for _ in range(3):
        next(it)
    state = first.state_dict()
    assert state["epoch"] == 3 and state["batch"] == 3
    rest = list(it)

    resumed = TensorLoader(ds, **{**kw, "seed": 0})
    resumed.load_state_dict(state)
    resumed.set_epoch(3)  # a training loop re-entering the epoch keeps the position
    again = list(resumed)
    assert len(again) == len(rest) == len(first) - 3
    for x, y in zip(rest, again, strict=True):
        assert torch.equal(x["index"], y["index"]) and torch.equal(x["image"], y["image"])
        assert torch.equal(x["params"].top, y["params"].top)
    assert resumed.state_dict()["batch"] == len(resumed)
    resumed.set_epoch(4)
    assert len(list(resumed)) == len(resumed)
    with pytest.raises(ValueError, match="batch_size"):
        TensorLoader(ds, 5).load_state_dict(state)


def test_loader_channels_last_and_image_dataset_checks():
    ds = tiny_dataset(8)
    b = next(iter(TensorLoader(ds, 4, augment=True, channels_last=True)))
    assert b["image"].is_contiguous(memory_format=torch.channels_last)
    assert isinstance(TensorLoader(ds, 4, augment=False).transform, Normalize)
    with pytest.raises(DataError, match="out of range"):
        ImageDataset(ds.images, torch.full((8,), 3), ["a", "b", "c"], "bad")
    with pytest.raises(DataError, match="uint8"):
        ImageDataset(ds.images.float(), ds.labels, ["a", "b", "c"], "bad")


def test_default_transforms_for_imagenet_sized_data():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, 3, 256, 256), dtype=torch.uint8, generator=g)
    ds = ImageDataset(images, torch.tensor([0, 1, 1]), ["a", "b"], "imagenet")
    train = TensorLoader(ds, 2, shuffle=True, augment=True, seed=0)
    assert isinstance(train.transform, RandomResizedCropFlip) and train.transform.size == 224
    assert next(iter(train))["image"].shape == (2, 3, 224, 224)
    test = TensorLoader(ds, 3, augment=False)
    assert test.transform.center_crop == 224
    mean, std = dataset_stats("imagenet")
    expected = normalize(images[:, :, 16:240, 16:240], mean, std)
    assert torch.allclose(next(iter(test))["image"], expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_loader_on_cuda_matches_cpu():
    ds = tiny_dataset(20, size=32)
    kw = {"batch_size": 8, "shuffle": True, "augment": True, "seed": 2}
    for cpu, gpu in zip(TensorLoader(ds, **kw), TensorLoader(ds, device="cuda", **kw),
                        strict=True):
        assert gpu["image"].is_cuda and gpu["label"].is_cuda
        assert torch.equal(cpu["index"], gpu["index"].cpu())
        assert torch.allclose(cpu["image"], gpu["image"].cpu(), atol=1e-5)
    on_gpu = TensorLoader(ds.to("cuda"), device="cuda", **kw)
    assert next(iter(on_gpu))["image"].is_cuda


@pytest.mark.parametrize("n,world", [(10, 3), (12, 4), (5, 2), (2, 3)])
def test_unpadded_eval_shards_cover_each_sample_once(n, world):
    ds = tiny_dataset(n)
    shards = [[i for b in TensorLoader(ds, 2, rank=r, world_size=world, pad=False) for i in b["index"].tolist()]
              for r in range(world)]
    flat = [i for s in shards for i in s]
    assert sorted(flat) == list(range(n))  # every sample exactly once, no padding
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
