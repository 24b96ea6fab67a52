"""ms per base training step of the main job (digits, UNet preset, batch 128, OT-CFM), optional profiler table."""
import sys, time, torch
from bfr_fast.data import load_dataset, InfiniteLoader
from bfr_fast.pipelines.presets import image_preset
from bfr_fast.losses import FlowMatchingLoss
from bfr_fast.pipelines.training import train_config
from bfr_fast.engine.trainer import Trainer

torch.manual_seed(0)
data = load_dataset("digits")
p = image_preset(data.image_shape)
model = p.build(data.image_shape[0], data.num_classes)
loss = FlowMatchingLoss(coupling=sys.argv[2] if len(sys.argv) > 2 else "ot", label_dropout=0.1, null_class=model.null_class)
batches = InfiniteLoader(data.train_x, data.train_y, p.batch_size, torch.Generator().manual_seed(0), device=torch.device("cpu"))
cfg = train_config(1300, p.lr)
tr = Trainer(model, lambda m, x, y: loss(m, x, y), batches, cfg, None)
for _ in range(10):
    tr._train_step(*next(batches))
n = 60
t = time.perf_counter()
for _ in range(n):
    tr._train_step(*next(batches))
print(f"{(time.perf_counter() - t) / n * 1e3:.1f} ms/step, threads {torch.get_num_threads()}")
if len(sys.argv) > 1 and sys.argv[1] == "--profile":
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(20):
            tr._train_step(*next(batches))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
