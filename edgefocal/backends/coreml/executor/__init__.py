"""A numpy executor for saved Core ML ML programs (.mlpackage), so a Core ML artifact's accuracy is known on Linux.

Hand-written because no library executes ML programs off macOS: Core ML itself (and coremltools'
`predict`) runs only on macOS, and coremltools ships no reference interpreter. We keep it small: the
program is read with coremltools' own MIL-proto loader (weights from the package's weight.bin), and only
the operations a FocalNet program uses are implemented; any other op is a clear error naming it.

- `program.py`: read the .mlpackage into a MIL program, describe its interface, count its ops.
- `ops.py`: the table of operations (numpy), including constexpr decompression and quantize/dequantize.
- `executor.py`: run the program on a batch; optionally observe every activation (for calibration).
"""
from edgefocal.backends.coreml.executor.executor import MLProgramExecutor
from edgefocal.backends.coreml.executor.program import ProgramInfo, op_census, read_program, to_program_input

__all__ = ["MLProgramExecutor", "ProgramInfo", "op_census", "read_program", "to_program_input"]
