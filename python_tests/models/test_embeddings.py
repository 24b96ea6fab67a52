import math

import pytest
import torch

from bfr_fast.models import ConditionEmbedding, LabelEmbedding, TimeEmbedding, batch_times, sinusoidal_embedding

CPU = torch.device("cpu")


class TestSinusoidalEmbedding:
    def test_matches_formula(self):
        t = torch.tensor([0.0, 0.5, 1.0])
        emb = sinusoidal_embedding(t, dim=4, scale=1000.0, max_period=10_000.0)
        # half = 2 frequencies: 10000^0 = 1 and 10000^(-1/2) = 0.01.
        args = [[1000.0 * ti * w for w in (1.0, 0.01)] for ti in t.tolist()]
        expected = torch.tensor([[math.cos(a), math.cos(b), math.sin(a), math.sin(b)] for a, b in args])
        torch.testing.assert_close(emb, expected, atol=1e-4, rtol=0)

    def test_odd_dim_pads_one_zero_column(self):
        emb = sinusoidal_embedding(torch.rand(5), dim=7)
        assert emb.shape == (5, 7)
        assert torch.all(emb[:, -1] == 0)

    @pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
    def test_is_float32_whatever_the_dtype_of_t(self, dtype):
        assert sinusoidal_embedding(torch.rand(3, dtype=dtype), dim=8).dtype == torch.float32

    def test_is_float32_under_bfloat16_autocast(self):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            emb = sinusoidal_embedding(torch.tensor([0.999, 1.0]), dim=16)
        assert emb.dtype == torch.float32
        assert not torch.allclose(emb[0], emb[1], atol=1e-2)

    def test_scale_separates_nearby_times(self):
        t = torch.tensor([0.5, 0.501])
        emb = sinusoidal_embedding(t, dim=32)
        assert (emb[0] - emb[1]).abs().max() > 0.5
        unscaled = sinusoidal_embedding(t, dim=32, scale=1.0)
        assert (unscaled[0] - unscaled[1]).abs().max() < 0.01


class TestBatchTimes:
    def test_python_number_is_broadcast(self):
        t = batch_times(0.25, 4, CPU)
        assert t.dtype == torch.float32
        assert t.tolist() == [0.25] * 4
        assert batch_times(1, 2, CPU).tolist() == [1.0, 1.0]

    def test_zero_dim_tensor_is_broadcast(self):
        assert batch_times(torch.tensor(0.5, dtype=torch.float64), 3, CPU).tolist() == [0.5] * 3

    def test_vector_is_kept_and_made_float32(self):
        t = torch.tensor([0.1, 0.2], dtype=torch.float64)
        out = batch_times(t, 2, CPU)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, t.float())

    @pytest.mark.parametrize("shape", [(3,), (2, 1), (1,)])
    def test_wrong_length_is_rejected(self, shape):
        with pytest.raises(ValueError, match="t must have shape"):
            batch_times(torch.rand(shape), 2, CPU)

    @pytest.mark.parametrize("t", [torch.tensor([0, 1]), torch.tensor([True, False]), True, "0.5"])
    def test_non_float_is_rejected(self, t):
        with pytest.raises(ValueError, match="^t must"):
            batch_times(t, 2, CPU)


class TestTimeEmbedding:
    def test_shape_and_time_dependence(self):
        torch.manual_seed(0)
        emb = TimeEmbedding(frequency_dim=16, embed_dim=24)(torch.tensor([0.0, 0.3, 1.0]))
        assert emb.shape == (3, 24)
        assert not torch.allclose(emb[0], emb[1])
        assert not torch.allclose(emb[1], emb[2])

    def test_rejects_tiny_frequency_dim(self):
        with pytest.raises(ValueError, match="frequency_dim"):
            TimeEmbedding(1, 8)


class TestLabelEmbedding:
    def test_none_is_the_null_class(self):
        embed = LabelEmbedding(num_classes=3, embed_dim=5)
        assert embed.null_class == 3
        torch.testing.assert_close(embed(None, 2, CPU), embed(torch.tensor([3, 3]), 2, CPU))

    def test_each_label_has_its_own_row(self):
        embed = LabelEmbedding(num_classes=3, embed_dim=5)
        out = embed(torch.tensor([0, 1, 2, 3]), 4, CPU)
        torch.testing.assert_close(out, embed.embedding.weight)

    @pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
    def test_any_integer_dtype_is_accepted(self, dtype):
        embed = LabelEmbedding(num_classes=3, embed_dim=5)
        torch.testing.assert_close(embed(torch.tensor([2, 0], dtype=dtype), 2, CPU), embed.embedding.weight[[2, 0]])

    @pytest.mark.parametrize("bad", [-1, 4, 100])
    def test_out_of_range_label_is_rejected(self, bad):
        embed = LabelEmbedding(num_classes=3, embed_dim=5)
        with pytest.raises(ValueError, match=rf"y must hold labels in \[0, 3\].*got {bad}"):
            embed(torch.tensor([0, bad]), 2, CPU)

    @pytest.mark.parametrize("y", [torch.tensor([0.0, 1.0]), torch.tensor([True, False]), [0, 1]])
    def test_non_integer_labels_are_rejected(self, y):
        with pytest.raises(ValueError, match="y must be an integer tensor"):
            LabelEmbedding(3, 5)(y, 2, CPU)

    def test_wrong_shape_is_rejected(self):
        with pytest.raises(ValueError, match=r"y must have shape \(2,\)"):
            LabelEmbedding(3, 5)(torch.tensor([0, 1, 2]), 2, CPU)

    def test_rejects_no_classes(self):
        with pytest.raises(ValueError, match="num_classes"):
            LabelEmbedding(0, 5)


class TestConditionEmbedding:
    def test_labels_change_the_embedding(self):
        torch.manual_seed(0)
        embed = ConditionEmbedding(8, 16, num_classes=2)
        t = torch.full((2,), 0.5)
        out = embed(t, torch.tensor([0, 1]), 2, CPU)
        assert not torch.allclose(out[0], out[1])
        assert embed.null_class == 2

    def test_unconditional_rejects_labels(self):
        embed = ConditionEmbedding(8, 16)
        assert embed.null_class is None
        assert embed(torch.rand(2), None, 2, CPU).shape == (2, 16)
        with pytest.raises(ValueError, match="y must be None"):
            embed(torch.rand(2), torch.tensor([0, 1]), 2, CPU)
