"""ms/step of the main job's base training step under variants, interleaved rounds."""
import sys, time, torch, statistics
from bfr_fast.data import load_dataset, InfiniteLoader
from bfr_fast.pipelines.presets import image_preset
from bfr_fast.losses import FlowMatchingLoss
from bfr_fast.pipelines.training import train_config
from bfr_fast.engine.trainer import Trainer

data = load_dataset("digits")
p = image_preset(data.image_shape)

def make(cl=False):
    torch.manual_seed(0)
    model = p.build(data.image_shape[0], data.num_classes)
    if cl:
        model = model.to(memory_format=torch.channels_last)
    loss = FlowMatchingLoss(coupling="ot", label_dropout=0.1, null_class=model.null_class)
    x = data.train_x.contiguous(memory_format=torch.channels_last) if cl else data.train_x
    batches = InfiniteLoader(x, data.train_y, p.batch_size, torch.Generator().manual_seed(0), device=torch.device("cpu"))
    tr = Trainer(model, lambda m, x, y: loss(m, x, y), batches, train_config(1300, p.lr), None)
    for _ in range(5):
        tr._train_step(*next(batches))
    return tr, batches

def run(tr, batches, n=15):
    t = time.perf_counter()
    for _ in range(n):
        tr._train_step(*next(batches))
    return (time.perf_counter() - t) / n * 1e3

variants = {"base": make(), "channels_last": make(True)}
res = {k: [] for k in list(variants) + ["no_mkldnn"]}
for r in range(3):
    for k, (tr, b) in variants.items():
        res[k].append(run(tr, b))
    with torch.backends.mkldnn.flags(enabled=False):
        res["no_mkldnn"].append(run(*variants["base"]))
for k, v in res.items():
    print(k, f"{statistics.median(v):.1f} ms/step", [round(x, 1) for x in v])
