// Operator schemas of bfr_fast, in one place. Kernels register per dispatch key in csrc/cpu and csrc/cuda;
// fake (meta) kernels and autograd formulas are registered from Python in bfr_fast/ops.
#include <Python.h>
#include <torch/library.h>

#include "cpu/vec_kernels.h"

TORCH_LIBRARY(bfr_fast, m) {
  // out = x + sum_i c_i k_i, with c_i[b] = scalars[i] * (vectors[i][b] if vectors[i] is given else 1).
  m.def("lincomb(Tensor x, Tensor[] ks, float[] scalars, Tensor?[] vectors) -> Tensor");
  m.def("lincomb_(Tensor(a!) x, Tensor[] ks, float[] scalars, Tensor?[] vectors) -> ()");
  m.def("lincomb_out(Tensor x, Tensor[] ks, float[] scalars, Tensor?[] vectors, Tensor(a!) out) -> ()");
  // Radial low-pass (high=False) or high-pass (high=True) filter on the 2-D FFT of (B, C, H, W).
  m.def("frequency_filter(Tensor x, float cutoff, bool high) -> Tensor");
  // Per-sample (low, high) band energies, (B, 2) float32.
  m.def("band_energy(Tensor x, float cutoff) -> Tensor");
  // Per-sample frequency-compensated MSE and the per-sample mean of s = sum_c |source| (saved for backward).
  m.def("fc_weighted_mse(Tensor pred, Tensor target, Tensor source, float gamma, float eps) -> (Tensor, Tensor)");
  m.def("fc_weighted_mse_backward(Tensor grad, Tensor pred, Tensor target, Tensor source, Tensor source_mean, "
        "float gamma, float eps) -> Tensor");
  // RMSD after optimal superposition (QCP) of every pair, and its row/column minima without the N x M matrix.
  m.def("pairwise_rmsd(Tensor X, Tensor Y) -> Tensor");
  m.def("rmsd_min(Tensor X, Tensor Y) -> (Tensor, Tensor, Tensor, Tensor)");
}

namespace bfr_fast {
const char* cpu_rmsd_isa();  // csrc/cpu/rmsd.cpp
}

// cpu_rmsd_isa(): which CPU code path the RMSD kernels run ("x86-64-v3" or "baseline"), so a test can see that
// BFR_FAST_CPU_BASELINE=1 switched it.
static PyObject* cpu_rmsd_isa(PyObject*, PyObject*) { return PyUnicode_FromString(bfr_fast::cpu_rmsd_isa()); }

// The instruction set of the vectorised CPU kernels (csrc/cpu/vec_kernels.h): the one running, those this build
// and CPU can run, and a switch among them for tests and benchmarks.
static PyObject* cpu_isa(PyObject*, PyObject*) {
  return PyUnicode_FromString(bfr_fast::cpu::isa_name(bfr_fast::cpu::active_isa()));
}

static PyObject* cpu_isas(PyObject*, PyObject*) {
  using bfr_fast::cpu::Isa;
  PyObject* names = PyList_New(0);
  for (Isa isa : {Isa::kDefault, Isa::kAvx2, Isa::kAvx512}) {
    if (static_cast<int>(isa) > static_cast<int>(bfr_fast::cpu::best_isa())) break;
    PyObject* name = PyUnicode_FromString(bfr_fast::cpu::isa_name(isa));
    PyList_Append(names, name);
    Py_DECREF(name);
  }
  return names;
}

static PyObject* set_cpu_isa(PyObject*, PyObject* arg) {
  const char* name = PyUnicode_AsUTF8(arg);
  if (name == nullptr) return nullptr;
  if (!bfr_fast::cpu::set_active_isa(name)) {
    PyErr_Format(PyExc_ValueError, "set_cpu_isa: %R is not an instruction set this build and CPU can run", arg);
    return nullptr;
  }
  Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"cpu_rmsd_isa", cpu_rmsd_isa, METH_NOARGS, "The ISA of the CPU RMSD kernels: 'x86-64-v3' or 'baseline'."},
    {"cpu_isa", cpu_isa, METH_NOARGS, "The ISA the vectorised CPU kernels run: 'default', 'avx2' or 'avx512'."},
    {"cpu_isas", cpu_isas, METH_NOARGS, "The ISAs the vectorised CPU kernels can run here, in increasing order."},
    {"set_cpu_isa", set_cpu_isa, METH_O, "Switches the vectorised CPU kernels to one of cpu_isas()."},
    {nullptr, nullptr, 0, nullptr}};

// Importing bfr_fast._C loads this library, which runs the registrations above. The module holds only the function
// above (plain Python C API), so the extension does not link against libtorch_python or pybind11.
extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};
  return PyModule_Create(&module_def);
}
