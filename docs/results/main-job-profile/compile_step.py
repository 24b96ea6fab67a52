"""The base's training step eager against torch.compile (inductor) of the model: compile time, then ms per step in
interleaved rounds of 10 steps. Run from the repository root: python docs/results/main-job-profile/compile_step.py"""
import time, torch, statistics, sys
from bfr_fast.data import load_dataset, InfiniteLoader
from bfr_fast.pipelines.presets import image_preset
from bfr_fast.losses import FlowMatchingLoss
from bfr_fast.pipelines.training import train_config
from bfr_fast.engine.trainer import Trainer
torch.manual_seed(0)
data = load_dataset("digits")
p = image_preset(data.image_shape)
def make(compiled):
    torch.manual_seed(0)
    model = p.build(data.image_shape[0], data.num_classes)
    loss = FlowMatchingLoss(coupling="ot", label_dropout=0.1, null_class=model.null_class)
    batches = InfiniteLoader(data.train_x, data.train_y, p.batch_size, torch.Generator().manual_seed(0), device=torch.device("cpu"))
    tr = Trainer(model, lambda m, x, y: loss(m, x, y), batches, train_config(1300, p.lr), None)
    if compiled:
        tr.trained_model = torch.compile(model)  # what _train_step calls
    return tr, batches
s = time.perf_counter()
trc, bc = make(True)
trc._train_step(*next(bc)); trc._train_step(*next(bc))
print(f"compile + 2 steps: {time.perf_counter() - s:.1f} s", flush=True)
tre, be = make(False)
res = {"eager": [], "compiled": []}
for r in range(5):
    for name, (tr, b) in (("eager", (tre, be)), ("compiled", (trc, bc))):
        s = time.perf_counter()
        for _ in range(10): tr._train_step(*next(b))
        res[name].append((time.perf_counter() - s) / 10 * 1e3)
for k, v in res.items(): print(k, f"median {statistics.median(v):.1f} ms/step, min {min(v):.1f}")
