import pytest
import torch
import torch.nn as nn
import torchvision

from cnnbench.errors import ConfigError
from cnnbench.models import create_model, list_models, register_model, resolve_variant
from cnnbench.models.complexity import count_params

ALL = list_models()


def test_zoo_has_every_column_of_table1_and_table2():
    for name in ["vgg11", "vgg11_lrn", "vgg13", "vgg16_c", "vgg16", "vgg19"]:
        assert name in ALL and name + "_bn" in ALL
    for name in ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]:
        assert name in ALL
    assert list_models("resnet1*") == ["resnet18", "resnet101", "resnet152"]


def _forward_backward(model, shape, batch=2):
    x = torch.randn(batch, *shape, requires_grad=False)
    out = model(x)
    assert out.shape == (batch, 10)
    out.float().sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("in_chans", [1, 3])
def test_every_model_trains_on_32px(name, in_chans):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=in_chans, variant="small")
    _forward_backward(model, (in_chans, 32, 32))


@pytest.mark.parametrize("name", ["vgg11", "vgg16_c_bn", "resnet18", "resnet50"])
def test_paper_variant_trains_on_32px(name):
    model = create_model(name, num_classes=10, in_chans=3, variant="paper")
    _forward_backward(model, (3, 32, 32))


@pytest.mark.parametrize("name", ["vgg11_bn", "resnet18"])
def test_some_models_train_at_224px(name):
    model = create_model(name, num_classes=10, in_chans=3, variant="auto", image_size=224)
    assert model.variant == "paper"
    _forward_backward(model, (3, 224, 224))


@pytest.mark.parametrize(
    "name,expected,reference",
    [
        ("vgg11", 132_863_336, torchvision.models.vgg11),
        ("vgg16", 138_357_544, torchvision.models.vgg16),
        ("vgg19", 143_667_240, torchvision.models.vgg19),
        ("vgg16_bn", None, torchvision.models.vgg16_bn),
        ("resnet18", 11_689_512, torchvision.models.resnet18),
        ("resnet50", 25_557_032, torchvision.models.resnet50),
    ],
)
def test_paper_variant_matches_torchvision(name, expected, reference):
    model = create_model(name, num_classes=1000, in_chans=3, variant="paper")
    ref = reference()
    if expected is not None:
        assert count_params(model) == expected
    assert count_params(model) == count_params(ref)
    model.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(1, 3, 224, 224)
    model.eval(), ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x))


def test_variant_auto_resolves_by_input_size():
    assert resolve_variant("auto", 32) == "small"
    assert resolve_variant("auto", 64) == "small"
    assert resolve_variant("auto", 65) == "paper"
    assert resolve_variant("paper", 32) == "paper"
    assert create_model("resnet18", image_size=28).variant == "small"


def test_small_and_paper_variants_differ_where_documented():
    small, paper = create_model("resnet18", variant="small"), create_model("resnet18", variant="paper")
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1) and isinstance(small.maxpool, nn.Identity)
    assert (
        paper.conv1.kernel_size == (7, 7) and paper.conv1.stride == (2, 2) and isinstance(paper.maxpool, nn.MaxPool2d)
    )
    vs, vp = create_model("vgg16", variant="small"), create_model("vgg16", variant="paper")
    assert isinstance(vs.classifier, nn.Linear) and vs.classifier.in_features == 512
    assert [m.out_features for m in vp.classifier if isinstance(m, nn.Linear)] == [4096, 4096, 10]


def test_vgg_columns_follow_table1():
    def convs(name):
        return [m for m in create_model(name, variant="small").features if isinstance(m, nn.Conv2d)]

    assert [len(convs(n)) for n in ["vgg11", "vgg13", "vgg16_c", "vgg16", "vgg19"]] == [8, 10, 13, 13, 16]
    assert [c.kernel_size[0] for c in convs("vgg16_c")].count(1) == 3
    assert all(c.kernel_size == (3, 3) for c in convs("vgg16"))
    lrn = create_model("vgg11_lrn", variant="small").features
    assert isinstance(lrn[2], nn.LocalResponseNorm) and not any(
        isinstance(m, nn.LocalResponseNorm) for m in convs("vgg11")
    )


def test_unknown_model_suggests_nearest_name():
    with pytest.raises(ConfigError, match="Did you mean 'resnet18'"):
        create_model("resnet81")


def test_registry_refuses_duplicates():
    with pytest.raises(ValueError):
        register_model("vgg16")(lambda **kw: None)


@pytest.mark.parametrize("name", ["vgg16_bn", "vgg11_lrn", "resnet18", "resnet50"])
@pytest.mark.parametrize("variant", ["small", "paper"])
def test_width_scales_every_layer(name, variant):
    """A quarter-width network has a quarter of the channels in every conv and about 1/16 of the conv weights."""
    full = create_model(name, variant=variant)
    narrow = create_model(name, variant=variant, width=0.25)
    convs = lambda m: [c.out_channels for c in m.modules() if isinstance(c, nn.Conv2d)]  # noqa: E731
    assert convs(narrow) == [max(1, round(c / 4)) for c in convs(full)]
    conv_weights = lambda m: sum(c.weight.numel() for c in m.modules() if isinstance(c, nn.Conv2d))  # noqa: E731
    assert conv_weights(narrow) < conv_weights(full) / 12
    size = 64 if variant == "paper" else 32
    assert narrow(torch.randn(2, 3, size, size)).shape == (2, 10)
    assert count_params(create_model(name, variant=variant, width=1.0)) == count_params(full)


def test_width_is_refused_where_it_cannot_apply(monkeypatch):
    import cnnbench.models.registry as registry

    with pytest.raises(ConfigError, match="above 0"):
        create_model("resnet18", width=0)
    fixed = lambda num_classes, in_chans, variant: nn.Linear(1, num_classes)  # noqa: E731
    monkeypatch.setitem(registry._MODELS, "fixed_width_for_test", fixed)
    with pytest.raises(ConfigError, match="one width only"):
        create_model("fixed_width_for_test", width=0.5)
