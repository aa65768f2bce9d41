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


def _layer_rows(spec) -> str:
    rows = []
    for layer in spec.layers:
        reuse = layer.knobs.get("reuse_factor", "")
        strategy = layer.knobs.get("strategy", "")
        multipliers = layer.cost.multipliers or ""
        rows.append(f"| {layer.ident} | `{layer.node}` | {layer.op} | `{layer.kernel}` | {reuse} | {strategy} "
                    f"| {multipliers} | {layer.cost.ii} | {layer.tokens} | {layer.cost.latency} |")
    return "\n".join(rows)


def interface_markdown(spec, fixed_type, stream_type: str, array_ports: str = "") -> str:
    """The `## Interface` and `## Layers` sections.

    fixed_type(FixedType) spells a port type; stream_type names what `qnn::stream` is;
    array_ports says how the backend maps the arrays of an io-parallel top to ports.
    """
    from hlsgen.top import ports

    design = spec.design
    interval, latency = design.interval, design.latency
    in_tokens, in_size = design.input_tokens
    several = len(design.ports) > 1
    signature = f"void {spec.top}({ports(design)});"
    if spec.io == "parallel":
        style = (f"io **parallel**: one call computes one sample{array_ports}. The top function is "
                 f"pipelined with initiation interval {interval} (the largest II of its layers): a new sample "
                 f"every {interval} clock cycle{'s' if interval > 1 else ''}.")
        x_port = f"`x[{spec.n_in}]`"
        y_ports = [f"`{port.name}[{port.size}]`" for port in design.ports]
    else:
        if several:
            writes = f"writes each of its {len(design.ports)} output ports' tokens (table below)"
        else:
            port = design.ports[0]
            writes = f"writes {port.tokens} output token(s) of {port.token_size}"
        style = (f"io **stream**: `qnn::stream` is `{stream_type}`; a token is `qnn::vec<T, N>` (elements in "
                 f"`.data[N]`). One call reads one sample as {in_tokens} input token(s) of {in_size} values and "
                 f"{writes}; tensors are channels last, so an image "
                 "arrives pixel by pixel, row by row. Every layer is a concurrent stage, pipelined at its II, "
                 "connected to the next by a stream.")
        x_port = f"`x` (`input_token_t` = `qnn::vec<input_t, {in_size}>`, {in_tokens} per sample)"
        y_ports = [f"`{port.name}` (`{port.type_name('token')}` = `qnn::vec<{port.type_name()}, {port.token_size}>`, "
                   f"{port.tokens} per sample)" for port in design.ports]
    rows = "\n".join(
        f"| {y_port} | `{port.type_name()}` = `{fixed_type(design.output_type(port))}` | "
        f"{f'graph output `{port.edge}`: ' if several else ''}{_meaning(design.output_type(port))} |"
        for port, y_port in zip(design.ports, y_ports))
    codes = ", ".join(f"`{port.type_name('code')}`" for port in design.ports)
    return f"""## Interface

Top function `{spec.top}` (declared in `firmware/{spec.top}.h`):

```cpp
{signature}
```

{style}

| port | C++ type | meaning |
|------|----------|---------|
| {x_port} | `input_t` = `{fixed_type(spec.input_type)}` | {_meaning(spec.input_type)} |
{rows}
{_outputs_paragraph(design) if several else ""}
Inside the design every tensor is an integer code (`input_code_t`, {codes} in
`firmware/parameters.h`); `qnn::from_code` / `qnn::to_code` move the raw bits between a code and
its fixed-point port value without rounding. The model's real values for the same samples are in
`tb_data/tb_input_features.dat` and `tb_data/tb_output_predictions.dat`.

## Layers

What the pragmas request, per layer: a reuse factor R shares each multiplier over R products
(multipliers = ceil(non-zero weights / R)) and sets the layer's initiation interval (II,
cycles between tokens) to R; strategy `latency` keeps the weights in registers, `resource` in
a ROM whose words hold ceil(weights / R) of them, one word read per cycle. Latency is the
estimate of the cycles from a token in to its result out (multiplier, adder tree of depth
ceil(log2 n_in), R cycles of sharing; thresholds: comparators and a count).

| layer | node | op | kernel | R | strategy | multipliers | II | tokens | latency |
|-------|------|----|--------|---|----------|-------------|----|--------|---------|
{_layer_rows(spec)}

Total, as requested: a new sample every **{interval}** cycle{'s' if interval > 1 else ''}, about **{latency}**
cycles ({latency * spec.clock_ns:g} ns at {spec.clock_ns:g} ns) from input to output. The vendor's
synthesis report gives the achieved numbers.
{_fifo_section(spec)}"""


def _outputs_paragraph(design) -> str:
    names = ", ".join(f"`{port.name}`" for port in design.ports)
    images = [port.name for port in design.ports if design.graph.channels_first(port.edge)]
    layout = (f"\nPorts carry images channels last; the model gives {', '.join(images)} channels first (as\n"
              "PyTorch does), and `qonnx run` / `Project.predict` return them that way." if images else "")
    return f"""
The {len(design.ports)} output ports {names} are the model's graph outputs, in their order; a
tensor that is a graph output and also feeds a later layer is copied to both. A line of
`tb_data/tb_output_codes.dat` (and of `tb_output_predictions.dat`) holds one sample's outputs
one port after the other: N_OUT = {design.n_out} values, port k's from `OUT<k>_OFFSET` on
(`firmware/parameters.h`). `qonnx run model.hw.onnx --input x.npy -o y.npz` writes them to
one `.npz`, by graph output name.{layout}
"""


def _fifo_section(spec) -> str:
    """io stream: the streams deeper than the usual 2 slots, and why."""
    from hlsgen.firmware import OUTPUT, fifo_depths

    if spec.io != "stream":
        return ""
    deep = fifo_depths(spec.design)
    if not deep:
        return "\nEvery stream between two stages holds 2 tokens: no branch waits for another.\n"
    rows = "\n".join(f"| `{stream}` | depth {depth} | {reason} |" for stream, (depth, reason) in
                     sorted((spec.design.reader_stream(edge, ident), value) for (edge, ident), value in deep.items()))
    outputs = ("" if all(ident != OUTPUT for _, ident in deep) else
               "\nThe output ports are such a join too: a consumer that takes a sample's outputs together (one\n"
               "packet per sample, say) reads an early port only when the last one is ready, so the early\n"
               "port's stream holds the difference, up to a whole sample. A consumer that drains every port\n"
               "on its own needs none of it.\n")
    return f"""
## FIFO depths

Streams hold 2 tokens, except where a branch reaches a join before the other one: there the
early branch's stream holds the difference, or the fork that feeds both would stall.
{outputs}
| stream | depth | why |
|--------|-------|-----|
{rows}
"""


def gxx_command(spec, header_variables: list[str]) -> str:
    """The plain g++ line that builds and runs the testbench from the project directory."""
    sources = " ".join(f for f in spec.firmware_files if f.endswith(".cpp"))
    isystem = " ".join(f'-isystem "${variable}"' for variable in header_variables)
    return (f"g++ -std=c++14 -DQNN_PLAIN_CXX -I firmware {isystem} tb/{spec.top}_test.cpp {sources} "
            "-o tb_run && ./tb_run")
