"""This CPU's best float32 rates with 2 threads: a large GEMM, a large oneDNN convolution, and the digits UNet's
own training step (forward + backward), in GFLOP/s."""
import time, torch
from torch.utils.flop_counter import FlopCounterMode
torch.manual_seed(0)
def rate(fn, reps):
    with FlopCounterMode(display=False) as fc:
        fn()
    flops = fc.get_total_flops()
    for _ in range(3): fn()
    best = float("inf")
    for _ in range(5):
        s = time.perf_counter()
        for _ in range(reps): fn()
        best = min(best, (time.perf_counter() - s) / reps)
    return flops / best / 1e9
a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
print(f"sgemm 2048^3: {rate(lambda: a @ b, 5):.1f} GFLOP/s")
conv = torch.nn.Conv2d(256, 256, 3, padding=1)
x = torch.randn(32, 256, 32, 32)
with torch.no_grad():
    print(f"conv 256->256 3x3 32x32 batch 32 forward: {rate(lambda: conv(x), 3):.1f} GFLOP/s")
from bfr_fast.data import load_dataset
from bfr_fast.pipelines.presets import image_preset
data = load_dataset("digits")
p = image_preset(data.image_shape)
model = p.build(data.image_shape[0], data.num_classes)
xb = torch.randn(128, *data.image_shape); t = torch.rand(128); y = torch.randint(0, 10, (128,))
def step():
    model.zero_grad(); model(xb, t, y).square().mean().backward()
print(f"digits UNet fwd+bwd batch 128: {rate(step, 10):.1f} GFLOP/s")
with torch.no_grad():
    xe = torch.randn(1000, *data.image_shape); te = torch.rand(1000); ye = torch.randint(0, 10, (1000,))
    print(f"digits UNet forward batch 1000 (sampling): {rate(lambda: model(xe, te, ye), 3):.1f} GFLOP/s")
