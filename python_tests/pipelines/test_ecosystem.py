"""The training libraries' own networks, tiny and randomly initialised, built and called by the CLI's options alone:
torchcfm's UNetModelWrapper (and a checkpoint in the BFR authors' CIFAR-10 format), diffusers' UNet2DModel from a
save_pretrained folder and from an EMAModel state, and a network in Meta flow_matching's ModelWrapper convention.
Skipped, with the reason, without the ``ecosystem`` extra."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from bfr_fast.pipelines.generators import GeneratorSpec, build_factory_network, frozen_generator

CPU = torch.device("cpu")
EXTRA = "the ecosystem extra is not installed (pip install -e '.[ecosystem]')"


def _forward_equal(spec: GeneratorSpec, direct, shape, classes=10):
    """The frozen generator's model at (x, t, y) equals the library's own call ``direct(network, x, t, y)``."""
    torch.manual_seed(0)
    network = build_factory_network(spec)
    generator = frozen_generator(spec, shape, classes, CPU, network=network)
    x, t = torch.randn(4, *shape), torch.rand(4)
    y = torch.tensor([0, 3, 5, 9]) if classes else None
    with torch.no_grad():
        torch.testing.assert_close(generator.model(x, t, y), direct(network, x, t, y))
    return generator


def test_torchcfm_unet_from_a_dataparallel_checkpoint(tmp_path):
    pytest.importorskip("torchcfm", reason=EXTRA)
    from torchcfm.models.unet.unet import UNetModelWrapper

    kwargs = {"dim": [1, 8, 8], "num_channels": 32, "num_res_blocks": 1, "channel_mult": [1, 2], "class_cond": True,
              "num_classes": 10}
    torch.manual_seed(1)
    net, ema = torch.nn.DataParallel(UNetModelWrapper(**kwargs)), torch.nn.DataParallel(UNetModelWrapper(**kwargs))
    path = tmp_path / "cfm.pt"
    torch.save({"net_model": net.state_dict(), "ema_model": ema.state_dict(), "step": 1}, path)
    spec = GeneratorSpec("torchcfm.models.unet.unet:UNetModelWrapper", path, kwargs=kwargs, convention="torchcfm",
                         checkpoint_key="ema_model", conditional=True)
    _forward_equal(spec, lambda n, x, t, y: ema.module(t, x, y), (1, 8, 8))


def test_the_bfr_authors_cifar10_base_format_loads_and_samples(tmp_path):
    """Their base (train_cifar10_base.py) is torchcfm's class-conditional UNetModelWrapper, saved from DataParallel
    as net_model/ema_model/sched/optim/step; their arguments but for width and depth, the same layout."""
    pytest.importorskip("torchcfm", reason=EXTRA)
    from torchcfm.models.unet.unet import UNetModelWrapper

    kwargs = {"dim": [3, 32, 32], "num_res_blocks": 1, "num_channels": 32, "channel_mult": [1, 2, 2, 2],
              "num_heads": 4, "num_head_channels": 64, "attention_resolutions": "16", "dropout": 0.1,
              "class_cond": True, "num_classes": 10}
    torch.manual_seed(2)
    net = torch.nn.DataParallel(UNetModelWrapper(**kwargs))
    ema = torch.nn.DataParallel(UNetModelWrapper(**kwargs))
    optim = torch.optim.Adam(net.parameters(), lr=2e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lr_lambda=lambda step: 1.0)
    path = tmp_path / "cifar10_weights_step_400000.pt"
    torch.save({"net_model": net.state_dict(), "ema_model": ema.state_dict(), "sched": sched.state_dict(),
                "optim": optim.state_dict(), "step": 400000}, path)
    assert all(k.startswith("module.") for k in torch.load(path)["ema_model"])
    spec = GeneratorSpec("torchcfm.models.unet.unet:UNetModelWrapper", path, kwargs=kwargs, convention="torchcfm",
                         checkpoint_key="ema_model", sampler_steps=2, conditional=True)
    generator = _forward_equal(spec, lambda n, x, t, y: ema.module.eval()(t, x, y), (3, 32, 32))
    samples, nfe = generator.sample(torch.randn(2, 3, 32, 32), torch.tensor([3, 7]))
    assert samples.shape == (2, 3, 32, 32) and nfe == 2 and torch.isfinite(samples).all()


def _tiny_unet2d():
    from diffusers import UNet2DModel

    torch.manual_seed(3)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(16, 32),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=8, num_class_embeds=10)


def test_diffusers_unet_from_a_save_pretrained_folder(tmp_path):
    pytest.importorskip("diffusers", reason=EXTRA)
    from bfr_fast.paths import ProbabilityFlowVelocity

    model = _tiny_unet2d()
    model.save_pretrained(tmp_path / "unet")
    spec = GeneratorSpec("diffusers:UNet2DModel", tmp_path / "unet", parameterization="eps", convention="diffusers",
                         conditional=True)
    generator = frozen_generator(spec, (1, 8, 8), 10, CPU)
    assert isinstance(generator.model, ProbabilityFlowVelocity)
    eps_model = generator.model.eps_model  # the diffusers network behind our convention
    x, index, y = torch.randn(3, 1, 8, 8), torch.tensor([10.0, 500.0, 990.0]), torch.tensor([1, 2, 3])
    with torch.no_grad():
        torch.testing.assert_close(eps_model(x, index, y), model(x, index, class_labels=y).sample)


def test_diffusers_ema_state_loads_into_the_class_built_from_kwargs(tmp_path):
    pytest.importorskip("diffusers", reason=EXTRA)
    from diffusers.training_utils import EMAModel

    model = _tiny_unet2d()
    ema = EMAModel(model.parameters(), decay=0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.step(model.parameters())
    path = tmp_path / "ema_state.pt"
    torch.save(ema.state_dict(), path)
    kwargs = {"sample_size": 8, "in_channels": 1, "out_channels": 1, "layers_per_block": 1,
              "block_out_channels": [16, 32], "down_block_types": ["DownBlock2D", "DownBlock2D"],
              "up_block_types": ["UpBlock2D", "UpBlock2D"], "norm_num_groups": 8, "num_class_embeds": 10}
    spec = GeneratorSpec("diffusers:UNet2DModel", path, parameterization="eps", convention="diffusers",
                         conditional=True, kwargs=kwargs)
    network = build_factory_network(spec)
    ema.copy_to(model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(network.parameters(), model.parameters(), strict=True))


def test_a_save_pretrained_folder_refuses_kwargs_and_a_plain_class(tmp_path):
    pytest.importorskip("diffusers", reason=EXTRA)
    _tiny_unet2d().save_pretrained(tmp_path / "unet")
    with pytest.raises(ValueError, match="carries its own config and weights; drop --generator-kwargs"):
        build_factory_network(GeneratorSpec("diffusers:UNet2DModel", tmp_path / "unet", kwargs={"sample_size": 8}))
    with pytest.raises(ValueError, match="is a folder; pass the checkpoint file inside it"):
        build_factory_network(GeneratorSpec("torch.nn:Identity", tmp_path / "unet"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no config.json, so it is not a save_pretrained folder"):
        build_factory_network(GeneratorSpec("diffusers:UNet2DModel", tmp_path / "empty"))


def test_flow_matching_model_wrapper_gets_labels_in_its_extras(tmp_path, monkeypatch):
    pytest.importorskip("flow_matching", reason=EXTRA)
    (tmp_path / "fm_user.py").write_text(textwrap.dedent('''
        import torch
        from flow_matching.utils import ModelWrapper

        class Net(ModelWrapper):
            def __init__(self, width=8):
                super().__init__(torch.nn.Linear(65, 64))
                self.label_scale = torch.nn.Parameter(torch.tensor(0.1))

            def forward(self, x, t, **extras):
                h = self.model(torch.cat([x.flatten(1), t[:, None]], 1)).view_as(x)
                return h + self.label_scale * extras["label"].view(-1, 1, 1, 1)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = GeneratorSpec("fm_user:Net", kwargs={"width": 8}, convention="flow_matching", conditional=True)
    _forward_equal(spec, lambda n, x, t, y: n(x, t, label=y), (1, 8, 8))


@pytest.mark.parametrize("library", ["torchcfm", "diffusers", "flow_matching"])
def test_a_missing_library_names_the_extra(library, monkeypatch):
    monkeypatch.setitem(sys.modules, library, None)  # as if not installed
    message = r"is not installed; install the ecosystem extra: pip install -e \"\.\[ecosystem\]\""
    with pytest.raises(ValueError, match=message):
        build_factory_network(GeneratorSpec(f"{library}:Anything"))
