import numpy as np
import pytest
import torch

from emovox.errors import ConfigError
from emovox.models import build
from emovox.models.kernel import KernelMachine
from emovox.settings import Settings


def test_nystrom_features_reproduce_the_kernel_on_the_landmarks():
    x = torch.randn(40, 12, 1)
    km = KernelMachine(12, 1, 3, views=[[0, 5], [5, 12]], landmarks=40)
    km.init_from_data(x)
    for i, (a, b) in enumerate(km.views):
        phi = km._kernel(x.mean(2), i) @ getattr(km, f"whiten_{i}")
        exact = torch.exp(-torch.cdist(x[:, a:b, 0], x[:, a:b, 0]).square() / (b - a))
        assert torch.allclose(phi @ phi.T, exact, atol=1e-3)
    assert km(x).shape == (40, 3)


def test_fewer_training_vectors_than_landmarks_and_a_saved_model_rebuilds():
    x = torch.randn(7, 6, 1)
    net = build("kernel", n_features=6, n_frames=1, n_classes=2, landmarks=16)
    net.body.init_from_data(x, seed=3)
    assert torch.isfinite(net(x)).all()
    again = build("kernel", n_features=6, n_frames=1, n_classes=2, landmarks=16)
    again.load_state_dict(net.state_dict())
    assert torch.equal(again(x), net(x))
    with pytest.raises(ValueError, match="slices"):
        KernelMachine(6, 1, 2, views=[[0, 9]])


def test_scoring_folds_the_whitening_into_the_linear_layer_and_follows_new_weights():
    x = torch.randn(20, 6, 1)
    net = build("kernel", n_features=6, n_frames=1, n_classes=3, landmarks=8, views=[[0, 4], [2, 6]])
    net.body.init_from_data(x, seed=0)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    for _ in range(2):
        trained = net(x)  # grad enabled: the whitened features, as trained
        with torch.no_grad():
            np.testing.assert_allclose(net(x).numpy(), trained.detach().numpy(), atol=1e-5)  # the folded products
        opt.zero_grad()
        trained.square().mean().backward()
        opt.step()  # new weights: the next no-grad call folds them again


def test_default_recipe_is_the_kernel_machine_with_named_views():
    s = Settings.build()
    assert (s.train.model, s.features.kind) == ("kernel", "utterance")
    assert s.train.model_kwargs["views"] == [[0, 339], [339, 1107], [1107, 1875], [1875, 2643], [0, 83]]
    s = Settings.from_doc({"features": {"utterance": ["egemaps", "ge2e"]},
                           "train": {"model_kwargs": {"views": [["ge2e"], ["egemaps", "ge2e"]]}}})
    assert s.train.model_kwargs["views"] == [[88, 344], [0, 344]]
    assert Settings.from_doc({"features": {"utterance": ["ge2e"]}}).train.model_kwargs["views"] == [[0, 256]]
    assert Settings.from_doc({"features": {"kind": "logmel"}}).train.model == "cnn"
    with pytest.raises(ConfigError, match="adjacent"):
        Settings.from_doc({"features": {"utterance": ["egemaps", "ge2e", "ge2e_layers"]},
                           "train": {"model_kwargs": {"views": [["egemaps", "ge2e_layers"]]}}})


def test_kernel_machine_learns_a_nonlinear_boundary():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 2)).astype(np.float32)
    y = (np.hypot(x[:, 0], x[:, 1]) > 1.1).astype(np.int64)  # a ring: no linear rule separates it
    net = build("kernel", n_features=2, n_frames=1, n_classes=2, landmarks=100)
    xt = torch.from_numpy(x)[:, :, None]
    net.body.init_from_data(net.norm(xt))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), torch.from_numpy(y)).backward()
        opt.step()
    assert (net(xt).argmax(1).numpy() == y).mean() > 0.9


def test_clipping_keeps_one_wild_value_from_erasing_a_view():
    x = torch.randn(30, 6, 1)
    wild = x[:1].clone()
    wild[0, 0, 0] = 50.0  # one descriptor thrown far off by the channel
    kernels = []
    for clip in (None, 3.0):
        km = KernelMachine(6, 1, 2, landmarks=30, clip=clip)
        km.init_from_data(x)
        kernels.append(km._kernel(wild.mean(2), 0))
    assert kernels[0].max() < 1e-20 < 1e-3 < kernels[1].max()
    assert torch.isfinite(kernels[1]).all()
