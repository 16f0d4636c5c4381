"""VideoMamba backbone: checkpoint compatibility, variants, order sensitivity."""

from __future__ import annotations

import math

import pytest
import torch

from encoders import TokenLayout, create_video_encoder, list_video_encoders, load_video_weights
from encoders.modules.bimamba import BiMambaMixer, _backward_permutation
from encoders.ops.patch_embed import patch_embed
from tests.triton_interpreter import run_in_triton_interpreter

TINY = dict(depth=2, embed_dim=32, img_size=32, num_frames=4)


def opengvlab_classification_state_dict(embed_dim: int, depth: int, frames: int, img: int,
                                        num_classes: int, patch: int = 16, tubelet: int = 1,
                                        d_state: int = 16, d_conv: int = 4) -> dict[str, torch.Tensor]:
    """A state dict written from REFERENCE.md's documented key names and
    shapes of OpenGVLab's classification model, independently of our model."""
    c = embed_dim
    d_inner = 2 * c
    dt_rank = math.ceil(c / 16)
    grid = (img // patch) ** 2
    sd = {
        "patch_embed.proj.weight": torch.randn(c, 3, tubelet, patch, patch) * 0.02,
        "patch_embed.proj.bias": torch.zeros(c),
        "cls_token": torch.randn(1, 1, c) * 0.02,
        "pos_embed": torch.randn(1, 1 + grid, c) * 0.02,
        "temporal_pos_embedding": torch.randn(1, frames // tubelet, c) * 0.02,
        "norm_f.weight": torch.ones(c),
        "head.weight": torch.randn(num_classes, c) * 0.02,
        "head.bias": torch.zeros(num_classes),
    }
    for i in range(depth):
        p = f"layers.{i}."
        sd[p + "norm.weight"] = torch.ones(c)
        m = p + "mixer."
        sd[m + "in_proj.weight"] = torch.randn(2 * d_inner, c) * 0.02
        sd[m + "out_proj.weight"] = torch.randn(c, d_inner) * 0.02
        for sfx, a in (("", "A_log"), ("_b", "A_b_log")):
            sd[m + f"conv1d{sfx}.weight"] = torch.randn(d_inner, 1, d_conv) * 0.1
            sd[m + f"conv1d{sfx}.bias"] = torch.zeros(d_inner)
            sd[m + f"x_proj{sfx}.weight"] = torch.randn(dt_rank + 2 * d_state, d_inner) * 0.02
            sd[m + f"dt_proj{sfx}.weight"] = torch.randn(d_inner, dt_rank) * 0.1
            sd[m + f"dt_proj{sfx}.bias"] = torch.full((d_inner,), -4.0)
            sd[m + a] = torch.log(torch.arange(1, d_state + 1.0)).repeat(d_inner, 1)
            sd[m + f"D{sfx}"] = torch.ones(d_inner)
    return sd


def test_registry_lists_both_published_variants():
    assert {"videomamba_tiny", "videomamba_small", "videomamba_middle", "videomamba_kaist"} <= set(
        list_video_encoders()
    )
    with pytest.raises(ValueError, match="unknown video encoder"):
        create_video_encoder("videomamba_huge")
    with pytest.raises(ValueError, match="unknown option"):
        create_video_encoder("videomamba_tiny", widht=3)


@pytest.mark.parametrize("name,params_m", [("videomamba_tiny", 7.0), ("videomamba_small", 25.4),
                                           ("videomamba_middle", 73.6)])
def test_parameter_counts_match_the_paper(name, params_m):
    model = create_video_encoder(name)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(params_m, abs=0.5)


def test_opengvlab_tiny_checkpoint_loads_strictly(tmp_path):
    sd = opengvlab_classification_state_dict(192, 24, frames=8, img=224, num_classes=400)
    model = create_video_encoder("videomamba_tiny", num_classes=400)
    assert set(model.state_dict()) == set(sd)
    for key, value in model.state_dict().items():
        assert value.shape == sd[key].shape, key
    path = tmp_path / "videomamba_t16_k400_f8_res224.pth"
    torch.save({"model": sd}, path)
    load_video_weights(model, path)
    torch.testing.assert_close(model.pos_embed.detach(), sd["pos_embed"])
    torch.testing.assert_close(model.layers[5].mixer.A_b_log.detach(), sd["layers.5.mixer.A_b_log"])


def test_checkpoint_interpolates_positions_and_drops_foreign_head(tmp_path):
    sd = opengvlab_classification_state_dict(32, 2, frames=8, img=64, num_classes=10)
    path = tmp_path / "ckpt.pth"
    torch.save(sd, path)
    model = create_video_encoder("videomamba_tiny", depth=2, embed_dim=32, img_size=32, num_frames=4)
    load_video_weights(model, path)
    assert model.pos_embed.shape == (1, 1 + 4, 32)
    assert model.temporal_pos_embedding.shape == (1, 4, 32)
    torch.testing.assert_close(model.pos_embed[:, 0].detach(), sd["pos_embed"][:, 0])
    out = model(torch.randn(1, 3, 4, 32, 32))
    assert out.shape == (1, 32) and torch.isfinite(out).all()


def test_checkpoint_with_wrong_shape_or_missing_tensor_is_named(tmp_path):
    model = create_video_encoder("videomamba_tiny", **TINY)
    sd = opengvlab_classification_state_dict(32, 2, frames=4, img=32, num_classes=1)
    del sd["head.weight"], sd["head.bias"]
    broken = dict(sd)
    del broken["layers.1.mixer.D_b"]
    torch.save(broken, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing: layers\.1\.mixer\.D_b"):
        load_video_weights(model, tmp_path / "missing.pth")
    broken = dict(sd)
    broken["layers.0.mixer.x_proj_b.weight"] = torch.zeros(3, 3)
    torch.save(broken, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=r"layers\.0\.mixer\.x_proj_b\.weight"):
        load_video_weights(model, tmp_path / "shape.pth")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        load_video_weights(model, tmp_path / "junk.pth")


@pytest.mark.parametrize("name", ["videomamba_tiny", "videomamba_small", "videomamba_middle", "videomamba_kaist"])
@pytest.mark.parametrize("backward_order", ["full", "temporal", "spatial"])
def test_every_variant_runs_forward_and_backward_on_cpu(name, backward_order):
    model = create_video_encoder(name, backward_order=backward_order, drop_path_rate=0.1, **TINY)
    model.train()
    video = torch.randn(2, 3, 4, 32, 32)
    features = model(video)
    assert features.shape == (2, 32)
    features.pow(2).sum().backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), pname
    assert model.patch_embed.proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["videomamba_tiny", "videomamba_kaist"])
def test_reversing_frames_changes_the_clip_feature(name):
    torch.manual_seed(0)
    model = create_video_encoder(name, **TINY).eval()
    video = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        forward = model(video)
        reverse = model(video.flip(2))
    assert (forward - reverse).abs().max() > 1e-3 * forward.abs().max()


def test_output_kinds_and_frame_pooling():
    model = create_video_encoder("videomamba_tiny", **TINY).eval()
    video = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        tokens = model(video, output="tokens")
        frames = model(video, output="frames")
        cls = model(video, output="cls")
    assert tokens.shape == (2, 1 + 4 * 4, 32)
    torch.testing.assert_close(cls, tokens[:, 0])
    expected = tokens[:, :1] + tokens[:, 1:].reshape(2, 4, 4, 32).mean(2)
    torch.testing.assert_close(frames, expected)


def test_kaist_variant_uses_tubelets_and_a_joint_position_table():
    model = create_video_encoder("videomamba_kaist", **TINY)
    assert model.patch_embed.proj.kernel_size == (2, 16, 16)
    assert not hasattr(model, "temporal_pos_embedding")
    assert model.pos_embed.shape == (1, 1 + 2 * 4, 32)
    # "temporal expanding": every time step starts from the same spatial table.
    grid = model.pos_embed[0, 1:].reshape(2, 4, 32)
    torch.testing.assert_close(grid[0], grid[1])
    assert model(torch.randn(1, 3, 4, 32, 32), output="frames").shape == (1, 2, 32)


@pytest.mark.parametrize("kernel, size, bias", [((1, 16, 16), (4, 48, 40), True), ((2, 4, 3), (6, 10, 13), False)])
def test_patch_embedding_is_the_conv3d(kernel, size, bias):
    """The tubelet GEMM the encoder embeds with equals Conv3d(kernel == stride),
    including sizes past the last whole patch (dropped), and passes gradients."""
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(3, 8, kernel, stride=kernel, bias=bias).double()
    video = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
    out = patch_embed(video, conv.weight, conv.bias)
    expected = conv(video).flatten(3).permute(0, 2, 3, 1)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), (video, conv.weight))
    expected_grads = torch.autograd.grad((expected * weights).sum(), (video, conv.weight))
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["videomamba_tiny", "videomamba_kaist"])
def test_other_frame_counts_and_resolutions_interpolate_positions(name):
    model = create_video_encoder(name, **TINY).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 8, 48, 48), output="frames")
    assert out.shape == (1, 8 // model.cfg.tubelet_size, 32)
    assert torch.isfinite(out).all()


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = create_video_encoder("videomamba_tiny", **TINY).train()
    video = torch.randn(2, 3, 4, 32, 32)
    model(video).sum().backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(video).sum().backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, plain[name], rtol=1e-4, atol=1e-6, msg=name)


def test_mixer_initialisation_follows_mamba():
    mixer = BiMambaMixer(64)
    assert mixer.dt_rank == 4 and mixer.d_inner == 128
    expected_a = torch.log(torch.arange(1, 17.0)).expand(128, 16)
    torch.testing.assert_close(mixer.A_log.detach(), expected_a)
    torch.testing.assert_close(mixer.A_b_log.detach(), expected_a)
    for dt_proj in (mixer.dt_proj, mixer.dt_proj_b):
        dt = torch.nn.functional.softplus(dt_proj.bias.detach())
        assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 1e-1 * 1.001


@pytest.mark.parametrize("order", ["full", "temporal", "spatial"])
def test_backward_direction_reaches_the_first_token(order):
    # A mixer that silently drops its backward scan (OpenGVLab's slow-path bug)
    # would leave token 0 independent of later tokens.
    torch.manual_seed(0)
    mixer = BiMambaMixer(16, backward_order=order)
    layout = TokenLayout(num_frames=3, tokens_per_frame=4)
    x = torch.randn(1, layout.length, 16)
    y0 = mixer(x, layout)
    x2 = x.clone()
    x2[:, -1] += 1.0
    y1 = mixer(x2, layout)
    assert (y0[:, 0] - y1[:, 0]).abs().max() > 1e-6


def test_backward_permutations():
    layout = TokenLayout(num_frames=3, tokens_per_frame=2)  # tokens: cls=0, f0=(1,2), f1=(3,4), f2=(5,6)
    perm, inverse = _backward_permutation("temporal", layout, torch.device("cpu"))
    assert perm.tolist() == [5, 6, 3, 4, 1, 2, 0]
    assert perm[inverse].tolist() == list(range(7))
    perm, _ = _backward_permutation("spatial", layout, torch.device("cpu"))
    assert perm.tolist() == [2, 1, 4, 3, 6, 5, 0]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_triton_causal_conv_matches_conv1d(dtype, tol):
    from encoders.ops.causal_conv import causal_conv1d_pair_triton, causal_conv1d_reference, causal_conv1d_triton

    torch.manual_seed(0)
    # A strided input, as the mixer passes it (a channel slice of a bigger tensor).
    xz = torch.randn(3, 2 * 37, 1571, device="cuda", dtype=dtype)
    x = xz[:, 37:]
    weight = torch.randn(37, 1, 4, device="cuda", dtype=dtype)
    bias = torch.randn(37, device="cuda", dtype=dtype)
    for b in (bias, None):
        for silu in (True, False):
            expected = causal_conv1d_reference(x.double(), weight.double(), None if b is None else b.double(), silu)
            actual = causal_conv1d_triton(x, weight, b, silu)
            assert actual.is_contiguous() and actual.dtype == dtype
            err = (actual.double() - expected).abs().max() / expected.abs().max()
            assert err <= tol
            # Both directions in one pass: the causal conv above and the anti-causal one.
            weight_b = torch.randn(37, 1, 4, device="cuda", dtype=dtype)
            bias_b = None if b is None else torch.randn(37, device="cuda", dtype=dtype)
            expected_b = causal_conv1d_reference(x.double(), weight_b.double(),
                                                 None if b is None else bias_b.double(), silu, reverse=True)
            pair = causal_conv1d_pair_triton(x, (weight, b), (weight_b, bias_b), silu)
            for got, want in zip(pair, (expected, expected_b)):
                assert got.is_contiguous() and got.dtype == dtype
                assert (got.double() - want).abs().max() / want.abs().max() <= tol


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("valid", [1571, 1584, 3])
def test_triton_conv_pair_on_padded_rows(dtype, tol, valid):
    """Both convs in one pass on rows laid out as the mixer's inference pads
    them (a channel slice of in_proj's (channels, batch x length) output, length
    a multiple of 16, so every row is aligned and the kernel takes vector
    loads), reading nothing past ``valid`` and writing zeros after it."""
    from encoders.ops.causal_conv import causal_conv1d_pair_triton, causal_conv1d_reference

    torch.manual_seed(1)
    batch, dim, padded = 3, 40, 1584
    xz = torch.randn(2 * dim, batch * padded, device="cuda", dtype=dtype).view(2 * dim, batch, padded).transpose(0, 1)
    xz[..., valid:] = 1e4  # what lies past the valid length must not reach the outputs
    x = xz[:, :dim]
    weights = [torch.randn(dim, 1, 4, device="cuda") for _ in range(2)]
    biases = [torch.randn(dim, device="cuda") for _ in range(2)]
    pair = causal_conv1d_pair_triton(x, (weights[0], biases[0]), (weights[1], biases[1]), True, valid_length=valid)
    for reverse, got in enumerate(pair):
        expected = torch.zeros(batch, dim, padded, dtype=torch.float64, device="cuda")
        expected[..., :valid] = causal_conv1d_reference(x[..., :valid].double(), weights[reverse].double(),
                                                        biases[reverse].double(), True, reverse=bool(reverse))
        assert got.dtype == dtype
        assert (got.double() - expected).abs().max() / expected.abs().max() <= tol, reverse


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("length", [1571, 1584])
def test_triton_conv_pair_gradients_on_the_gpu(dtype, tol, length):
    """The training path's conv pair on CUDA (odd and aligned rows, as a
    channel slice of in_proj's output): outputs and all five gradients against
    float64 ``F.conv1d``, float32 weights as under autocast."""
    from encoders.ops.causal_conv import causal_conv1d_pair, causal_conv1d_reference

    torch.manual_seed(2)
    batch, dim = 3, 40
    xz = torch.randn(2 * dim, batch * length, device="cuda").view(2 * dim, batch, length).transpose(0, 1)
    x = xz[:, dim:].to(dtype).requires_grad_(True)
    params = [torch.randn(dim, 1, 4, device="cuda", requires_grad=True), torch.randn(dim, device="cuda", requires_grad=True),
              torch.randn(dim, 1, 4, device="cuda", requires_grad=True), torch.randn(dim, device="cuda", requires_grad=True)]
    cotangents = [torch.randn(batch, dim, length, device="cuda", dtype=torch.float64) for _ in range(2)]
    out = causal_conv1d_pair(x, (params[0], params[1]), (params[2], params[3]))
    sum((o.double() * c).sum() for o, c in zip(out, cotangents)).backward()
    exact = [t.detach().double().requires_grad_(True) for t in [x, *params]]
    ref = (causal_conv1d_reference(exact[0], exact[1], exact[2]),
           causal_conv1d_reference(exact[0], exact[3], exact[4], reverse=True))
    sum((o * c).sum() for o, c in zip(ref, cotangents)).backward()
    for got, want in [*zip(out, ref), *((a.grad, e.grad) for a, e in zip([x, *params], exact))]:
        assert got.dtype in (dtype, torch.float32)
        assert (got.double() - want).abs().max() / want.abs().max() <= tol


CONV_VALID_LENGTH_CHECK = """
import json, torch
from encoders.ops.causal_conv import causal_conv1d_pair_triton, causal_conv1d_reference, causal_conv1d_triton
torch.manual_seed(0)
xz = torch.randn(2, 2 * 5, 45)
x = xz[:, 5:]  # strided, as the mixer passes it
weights, biases = [torch.randn(5, 1, 4) for _ in range(2)], [torch.randn(5) for _ in range(2)]
errors = {}
for valid in (45, 37, 1):
    pair = causal_conv1d_pair_triton(x, (weights[0], biases[0]), (weights[1], biases[1]), True, valid_length=valid)
    for reverse in (False, True):
        w, b = weights[reverse], biases[reverse]
        expected = torch.zeros(2, 5, 45, dtype=torch.float64)
        expected[..., :valid] = causal_conv1d_reference(x[..., :valid].double(), w.double(), b.double(), True,
                                                        reverse=reverse)
        got = causal_conv1d_triton(x, w, b, True, reverse=reverse, valid_length=valid)
        errors[f"reverse={reverse}, valid={valid}"] = (got.double() - expected).abs().max().item()
        errors[f"pair, reverse={reverse}, valid={valid}"] = (pair[reverse].double() - expected).abs().max().item()
print(json.dumps(errors))
"""


def test_triton_conv_valid_length_in_the_interpreter():
    """``valid_length`` (the mixer's padded inference): the Triton convs (one
    direction, and both in one pass) read nothing past it and write zeros
    after it, both directions, checked on the CPU through Triton's interpreter."""
    errors = run_in_triton_interpreter(CONV_VALID_LENGTH_CHECK)
    assert len(errors) == 12
    assert max(errors.values()) <= 1e-5, errors


CONV_PAIR_GRADIENT_CHECK = """
import json, torch
import torch.nn.functional as F
from encoders.ops.causal_conv import _ConvPairFunction, causal_conv1d_reference
errors = {}
for length, valid, bias, silu in ((45, 45, True, True), (64, 64, True, True), (3, 3, True, True), (1, 1, False, True),
                                  (37, 37, True, False), (48, 45, True, True), (16, 2, True, True)):
    torch.manual_seed(length)
    xz = torch.randn(2, 2 * 5, length, dtype=torch.float64)
    x = xz[:, 5:].float().requires_grad_(True)  # odd rows
    params = [torch.randn(5, 1, 4, requires_grad=True), torch.randn(5, requires_grad=True) if bias else None,
              torch.randn(5, 1, 4, requires_grad=True), torch.randn(5, requires_grad=True) if bias else None]
    cot = [torch.randn(2, 5, length, dtype=torch.float64) for _ in range(2)]
    out = _ConvPairFunction.apply(x, *params, silu, valid)
    sum((o.double() * c).sum() for o, c in zip(out, cot)).backward()
    exact = [t.detach().double().requires_grad_(True) if t is not None else None for t in [x, *params]]
    pad = (0, length - valid)  # the padding's outputs are 0 and x there gets no gradient
    ref = (F.pad(causal_conv1d_reference(exact[0][..., :valid], exact[1], exact[2], silu), pad),
           F.pad(causal_conv1d_reference(exact[0][..., :valid], exact[3], exact[4], silu, reverse=True), pad))
    sum((o * c).sum() for o, c in zip(ref, cot)).backward()
    case = f"length {length}, valid {valid}, bias {bias}, silu {silu}"
    for name, got, want in [("out_f", out[0], ref[0]), ("out_b", out[1], ref[1])] + [
            (n, a.grad, e.grad) for n, a, e in zip(["x", "w_f", "b_f", "w_b", "b_b"], [x, *params], exact)
            if a is not None]:
        errors[f"{case}: {name}"] = ((got.double() - want).abs().max() / want.abs().max().clamp_min(1e-6)).item()
print(json.dumps(errors))
"""


def test_triton_conv_pair_gradients_in_the_interpreter():
    """The training path's conv pair (both directions, Triton forward and
    backward): outputs and the gradients of x, both weights and both biases
    against float64 ``F.conv1d``, odd and short lengths, with and without
    bias and SiLU, and padded rows (``valid_length``: zeros out, no gradient
    in), through Triton's interpreter."""
    errors = run_in_triton_interpreter(CONV_PAIR_GRADIENT_CHECK)
    assert len(errors) == 7 * 7 - 2
    assert max(errors.values()) <= 1e-5, errors


@pytest.mark.gpu
def test_cuda_encoder_matches_cpu_encoder():
    """The whole backbone on GPU (mamba-ssm scan if installed, Triton conv) against
    the CPU path (PyTorch scan, F.conv1d), float32, same weights and input."""
    torch.manual_seed(0)
    model = create_video_encoder("videomamba_tiny", depth=4, embed_dim=64, img_size=64, num_frames=8).eval()
    video = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        expected = model(video, output="tokens")
        actual = model.cuda()(video.cuda(), output="tokens").cpu()
    err = (actual - expected).abs().max() / expected.abs().max()
    assert err <= 1e-4


@pytest.mark.gpu
def test_cuda_encoder_trains_like_cpu_encoder():
    """Training through the whole backbone on the GPU (Triton scan with its
    backward, the conv pair with its backward, sequences padded to aligned
    rows by each block's norm) gives the CPU path's gradients (PyTorch scan,
    F.conv1d, no padding), float32, same weights and input."""
    torch.manual_seed(0)
    model = create_video_encoder("videomamba_tiny", depth=3, embed_dim=64, img_size=64, num_frames=4)
    model.eval()  # no drop path; autograd still records
    video = torch.randn(2, 3, 4, 64, 64)  # 1 + 4 x 16 = 65 tokens: padded to 80 on the GPU
    cotangent = torch.randn(2, 64)
    grads = {}
    for device, backend in (("cpu", "torch"), ("cuda", "triton")):
        for module in model.modules():
            if isinstance(module, BiMambaMixer):
                module.scan_backend = backend
        model.to(device).zero_grad()
        (model(video.to(device)) * cotangent.to(device)).sum().backward()
        grads[device] = {name: p.grad.detach().cpu().clone() for name, p in model.named_parameters()}
    assert len(grads["cpu"]) > 20
    for name, expected in grads["cpu"].items():
        actual = grads["cuda"][name]
        err = (actual - expected).abs().max() / expected.abs().max().clamp_min(1e-6)
        assert err <= 1e-4, (name, err.item())


@pytest.mark.gpu
def test_cuda_encoder_under_autocast_matches_cpu_encoder():
    """The app's GPU path (index.encoder): float32 weights under bf16 autocast,
    inference mode, our Triton kernels (padded rows, the dt kernel on bf16 rows
    with float32 weights), against the float32 CPU path."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    torch.manual_seed(0)
    model = create_video_encoder("videomamba_tiny", depth=4, embed_dim=64, img_size=64, num_frames=8).eval()
    video = torch.randn(2, 3, 8, 64, 64)
    with torch.inference_mode():
        expected = model(video, output="tokens")
        for module in model.modules():
            if isinstance(module, BiMambaMixer):
                module.scan_backend = "triton"
        with torch.autocast("cuda", dtype=torch.bfloat16):
            actual = model.cuda()(video.cuda(), output="tokens").float().cpu()
    err = ((actual - expected).norm() / expected.norm()).item()
    assert err <= 2e-2, err


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("length", [1 + 8 * 49, 400, 401])
def test_fused_bidirectional_mixer_matches_unfused(dtype, tol, length):
    """The one-launch Triton path (anti-causal conv, reverse-order scan, no flips;
    in inference on the sequence padded to 16 tokens: 7, 0 and 15 padding
    positions here) against the flip-based path with the PyTorch scan, same weights."""
    torch.manual_seed(0)
    mixer = BiMambaMixer(96).cuda().to(dtype).eval()
    hidden = torch.randn(4, length, 96, device="cuda", dtype=dtype)
    with torch.no_grad():
        mixer.scan_backend = "triton"
        fused = mixer(hidden)
        mixer.scan_backend = "torch"
        plain = mixer(hidden)
    err = (fused.double() - plain.double()).abs().max() / plain.double().abs().max()
    assert err <= tol


@pytest.mark.gpu
def test_fused_bidirectional_mixer_trains_like_unfused():
    """Training through the Triton path (autograd of the fused scan and of the
    anti-causal conv): input and parameter gradients equal the flip-based
    PyTorch path's, float32, same weights."""
    torch.manual_seed(0)
    mixer = BiMambaMixer(64).cuda()
    hidden = torch.randn(3, 1 + 4 * 49, 64, device="cuda", requires_grad=True)
    cotangent = torch.randn(3, 1 + 4 * 49, 64, device="cuda")
    grads = {}
    for backend in ("triton", "torch"):
        mixer.scan_backend = backend
        mixer.zero_grad()
        hidden.grad = None
        (mixer(hidden) * cotangent).sum().backward()
        grads[backend] = {"hidden": hidden.grad.clone(), **{n: p.grad.clone() for n, p in mixer.named_parameters()}}
    for name, expected in grads["torch"].items():
        actual = grads["triton"][name]
        err = (actual - expected).abs().max() / expected.abs().max().clamp_min(1e-6)
        assert err <= 1e-4, (name, err.item())


def test_mixer_inference_keeps_scan_parameters_until_they_change():
    """Without autograd the mixer keeps A = -exp(A_log), D and the dt bias in
    float32 between calls; an in-place update, a dtype change or a pickle
    round trip must never serve stale values."""
    import pickle

    torch.manual_seed(0)
    mixer = BiMambaMixer(16).eval()
    hidden = torch.randn(2, 9, 16)

    def fresh(module, x):  # the same mixer with its cache emptied
        module._parameter_cache.clear()
        return module(x)

    with torch.no_grad():
        first = mixer(hidden)
        assert torch.equal(mixer(hidden), first)
        mixer.A_b_log.add_(0.5)
        mixer.D.mul_(2.0)
        updated = mixer(hidden)
        assert not torch.equal(updated, first) and torch.equal(updated, fresh(mixer, hidden))
        restored = pickle.loads(pickle.dumps(mixer))
        assert torch.equal(restored(hidden), updated)
        mixer.double()
        assert torch.equal(mixer(hidden.double()), fresh(mixer, hidden.double()))
    # With autograd the parameters get their gradients.
    mixer.float()(hidden).sum().backward()
    assert mixer.A_log.grad is not None and mixer.D_b.grad is not None
