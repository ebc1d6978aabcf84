"""Run a saved ML program on a batch with numpy: constants and compressed weights are materialised once at
load, then the ops run in program order, each intermediate freed after its last use."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgefocal.backends.coreml.executor.ops import CONSTEXPR_OPS, OPS, RunContext
from edgefocal.backends.coreml.executor.program import op_census, read_program
from edgefocal.errors import BadInput


@dataclass
class _Step:
    op_type: str
    name: str
    fn: Callable
    consts: dict  # argument name -> constant value
    dynamic: dict  # argument name -> var name, or tuple of (is_const, value-or-var-name) for tuple inputs
    outputs: list[str]
    fp16_out: list[bool]
    free_after: list[str]


def _value(var) -> object:
    val = var.val
    return val if isinstance(val, str) else np.asarray(val)


class MLProgramExecutor:
    """Executes the `main` function of a saved .mlpackage. `run(x)` maps the model input (float32 NCHW;
    pixel values 0..255 when the package takes an image) to the program's final tensor: the logits, or for a
    classifier the probabilities tensor `classify` reads (Core ML's class-probability dictionary, as a row)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        prog, self.info = read_program(self.path)
        self.census = op_census(prog)
        self._compile(prog)

    def _compile(self, prog) -> None:
        from coremltools.converters.mil.mil import types

        main = prog.functions["main"]
        unsupported = sorted({op.op_type for op in main.operations
                              if op.op_type != "const" and op.op_type not in OPS and op.op_type not in CONSTEXPR_OPS})
        if unsupported:
            names = ", ".join(f"'{t}'" for t in unsupported)
            raise BadInput(f"unsupported Core ML op {names} in {self.path}",
                           hint="the edgefocal executor implements the ops FocalNet programs use "
                                f"({', '.join(sorted(OPS))}, constexpr weight ops); verify this model on macOS")
        consts: dict[str, object] = {}
        ctx = RunContext(declared_batch=self.info.declared_batch)
        steps: list[_Step] = []
        for op in main.operations:
            if op.op_type == "const":
                consts[op.outputs[0].name] = _value(op.outputs[0])
                continue
            const_args, dyn_args = {}, {}
            for arg, var in op.inputs.items():
                if isinstance(var, (list, tuple)):
                    refs = tuple((v.name in consts, consts[v.name] if v.name in consts else v.name) for v in var)
                    if all(is_c for is_c, _ in refs):
                        const_args[arg] = [val for _, val in refs]
                    else:
                        dyn_args[arg] = refs
                elif var.name in consts:
                    const_args[arg] = consts[var.name]
                elif var.op is None and var.name not in main.inputs:
                    raise BadInput(f"op '{op.name}' in {self.path} reads '{var.name}', which nothing defines",
                                   hint="the package is inconsistent; re-create it")
                else:
                    dyn_args[arg] = var.name
            outputs = [o.name for o in op.outputs]
            if op.op_type in CONSTEXPR_OPS or not dyn_args:  # weights and constant folding: evaluate now
                fn = CONSTEXPR_OPS.get(op.op_type) or OPS[op.op_type]
                for name, val in zip(outputs, fn(const_args, ctx)):
                    consts[name] = val
                continue
            fp16 = [o.dtype == types.fp16 for o in op.outputs]
            steps.append(_Step(op.op_type, op.name, OPS[op.op_type], const_args, dyn_args, outputs, fp16, []))
        # free each activation after its last reader
        last_use: dict[str, int] = {}
        for i, s in enumerate(steps):
            for ref in s.dynamic.values():
                for name in ([r for is_c, r in ref if not is_c] if isinstance(ref, tuple) else [ref]):
                    last_use[name] = i
        keep = {o.name for o in main.outputs}
        for name, i in last_use.items():
            if name not in keep:
                steps[i].free_after.append(name)
        self._steps = steps
        self._consts = consts
        self._outputs = [o.name for o in main.outputs]
        classify = [s for s in steps if s.op_type == "classify"]
        self._result = classify[-1].outputs[1] if classify else self._outputs[0]

    def run(self, x: np.ndarray, observe: Callable[[str, np.ndarray], None] | None = None) -> np.ndarray:
        """The program's result for one batch; `observe(var_name, value)` sees every activation (calibration)."""
        x = np.asarray(x, dtype=np.float32)
        shape = self.info.input_shape
        if x.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape[1:], x.shape[1:])):
            raise BadInput(f"input of shape {x.shape} does not fit {self.path.name}'s input {shape}",
                           hint="preprocess with the model's data config (N, C, H, W)")
        ctx = RunContext(declared_batch=self.info.declared_batch, batch=x.shape[0])
        env: dict[str, np.ndarray] = {self.info.input_name: x}
        if observe is not None:
            observe(self.info.input_name, x)
        for s in self._steps:
            args = dict(s.consts)
            for arg, ref in s.dynamic.items():
                args[arg] = [val if is_c else env[val] for is_c, val in ref] if isinstance(ref, tuple) else env[ref]
            try:
                outs = s.fn(args, ctx)
            except (ValueError, KeyError, IndexError) as e:
                raise BadInput(f"Core ML op '{s.op_type}' ({s.name}) in {self.path} failed in the executor: {e}",
                               hint="an op variant the executor does not implement; verify this model on macOS") from e
            for name, val, half in zip(s.outputs, outs, s.fp16_out):
                if half and isinstance(val, np.ndarray) and val.dtype == np.float32:
                    val = val.astype(np.float16)
                env[name] = val
                if observe is not None and s.op_type != "classify":
                    observe(name, val)
            for name in s.free_after:
                env.pop(name, None)
        return np.asarray(env[self._result], dtype=np.float32)
