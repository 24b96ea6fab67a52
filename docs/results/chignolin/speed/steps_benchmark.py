"""Steps per second of the chignolin MD on the CPU platform, 1 and 2 threads, twice each (a frame every 100 steps)."""
import time, openmm
from openmm import app, unit
from bfr_fast.data.molecules.chignolin import chignolin_structure
from bfr_fast.data.molecules import create_system
pdb = app.PDBFile(str(chignolin_structure("runs/chignolin-cache")))
for threads in ("1", "2", "1", "2"):
    system = create_system(pdb.topology)
    integ = openmm.LangevinMiddleIntegrator(300*unit.kelvin, 1/unit.picosecond, 2*unit.femtosecond)
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName("CPU"), {"Threads": threads})
    ctx.setPositions(pdb.positions); openmm.LocalEnergyMinimizer.minimize(ctx, maxIterations=200)
    integ.step(50)
    t0 = time.perf_counter(); c0 = time.process_time()
    for _ in range(20):
        integ.step(100); ctx.getState(getPositions=True, getEnergy=True)
    dt = time.perf_counter() - t0
    print(threads, f"{dt*1000/2000:.2f} ms/step", f"{2e-6*2000/dt*86400:.1f} ns/day", f"cpu/wall {(time.process_time()-c0)/dt:.2f}", flush=True)
