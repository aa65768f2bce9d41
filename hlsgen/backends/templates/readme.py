"""README parts both backends share: the interface of the top function, the layers, the g++ line."""

from __future__ import annotations

from qonnx_ir.types import FixedType


def _meaning(fixed: FixedType) -> str:
    """What the bits of a port mean, in words a reader can check against tb_data/."""
    if fixed.bipolar:
        return "bipolar: the value is -1 or +1 (the code itself)"
    sign = "signed" if fixed.signed else "unsigned"
    low, high = fixed.min_code * fixed.lsb, fixed.max_code * fixed.lsb
    return (f"{sign} {fixed.width} bits, {fixed.int_bits} integer bits: value = code × 2^{-fixed.frac_bits}, "
            f"range [{low:.17g}, {high:.17g}]")


def interface_markdown(spec, fixed_type, stream_type: str, array_ports: str = "") -> str:
    """The `## Interface` and `## Layers` sections.

    fixed_type(FixedType) spells a port type; stream_type names what `qnn::stream` is;
    array_ports says how the backend maps the arrays of an io-parallel top to ports.
    """
    if spec.io == "parallel":
        signature = f"void {spec.top}(const input_t x[N_IN], result_t y[N_OUT]);"
        interval = max((layer.reuse_factor for layer in spec.layers), default=1)
        style = (f"io **parallel**: one call computes one sample{array_ports}. The top function is "
                 f"pipelined with initiation interval {interval} (the largest reuse factor): a new sample "
                 f"every {interval} clock cycle{'s' if interval > 1 else ''}.")
        x_port, y_port = f"`x[{spec.n_in}]`", f"`y[{spec.n_out}]`"
    else:
        signature = f"void {spec.top}(qnn::stream<input_vec_t> &x, qnn::stream<result_vec_t> &y);"
        style = (f"io **stream**: `qnn::stream` is `{stream_type}`; one token is a whole vector "
                 "(`qnn::vec<T, N>`, elements in `.data[N]`), and one call reads one input token "
                 "and writes one output token. The layers are concurrent stages connected by streams.")
        x_port, y_port = f"`x` (`input_vec_t` = `qnn::vec<input_t, {spec.n_in}>`)", \
            f"`y` (`result_vec_t` = `qnn::vec<result_t, {spec.n_out}>`)"
    rows = "\n".join(
        f"| {layer.ident} | `{layer.node_name}` | {layer.op} | `qnn::{layer.kernel}` | {layer.n_in} → {layer.n_out} "
        f"| {layer.reuse_factor} | {layer.strategy if layer.op == 'Dense' else ''} |"
        for layer in spec.layers
    )
    return f"""## Interface

Top function `{spec.top}` (declared in `firmware/{spec.top}.h`):

```cpp
{signature}
```

{style}

| port | C++ type | meaning |
|------|----------|---------|
| {x_port} | `input_t` = `{fixed_type(spec.input_type)}` | {_meaning(spec.input_type)} |
| {y_port} | `result_t` = `{fixed_type(spec.output_type)}` | {_meaning(spec.output_type)} |

Inside the design every tensor is an integer code (`input_code_t`, `result_code_t` in
`firmware/parameters.h`); `qnn::from_code` / `qnn::to_code` move the raw bits between a code and
its fixed-point port value without rounding. The model's real values for the same samples are in
`tb_data/tb_input_features.dat` and `tb_data/tb_output_predictions.dat`.

## Layers

A reuse factor R means each multiplier is used R times per sample: about R times fewer
multipliers, and R clock cycles between samples for that layer. Strategy `latency` keeps a
dense layer's weights in registers, `resource` in a ROM.

| layer | node | op | kernel | in → out | reuse factor | strategy |
|-------|------|----|--------|----------|--------------|----------|
{rows}
"""


def gxx_command(spec, header_variables: list[str]) -> str:
    """The plain g++ line that builds and runs the testbench from the project directory."""
    sources = " ".join(f for f in spec.firmware_files if f.endswith(".cpp"))
    isystem = " ".join(f'-isystem "${variable}"' for variable in header_variables)
    return (f"g++ -std=c++17 -DQNN_PLAIN_CXX -I firmware {isystem} tb/{spec.top}_test.cpp {sources} "
            "-o tb_run && ./tb_run")
