"""The C++ testbench: every sample of tb_data/ through the top function, output codes compared exactly."""

from __future__ import annotations

from dataclasses import dataclass

# Mismatch lines printed before the testbench only counts them.
MAX_REPORTED = 20


@dataclass(frozen=True)
class Spelling:
    """How a backend's testbench names its entry point, the design call and the exit."""

    title: str  # first comment line: which tool runs this testbench
    main: str  # e.g. "int main(int argc, char **argv)" or "CCS_MAIN(int argc, char **argv)"
    design: str  # "{top}" or "CCS_DESIGN({top})": the expression that is called
    exit: str  # "return" or "CCS_RETURN": used as `<exit>(value);`
    includes: str = ""  # extra includes after the design header (e.g. <mc_scverify.h>)


def _call(io: str, design: str, ports) -> str:
    """The body of the sample loop: codes in, one call of the design, every output port's codes out
    (into got[], a sample's outputs one after the other)."""
    names = ", ".join(port.name for port in ports)
    if io == "parallel":
        declarations = "".join(f"        {port.type_name()} {port.name}[{port.constant('N')}];\n" for port in ports)
        copies = "".join(f"        for (unsigned o = 0; o < {port.constant('N')}; o++) got[{port.at}o] = "
                         f"qnn::to_code<{port.type_name('code')}>({port.name}[o]).to_int64();\n" for port in ports)
        return f"""        input_t x[N_IN];
{declarations}        for (unsigned i = 0; i < N_IN; i++) x[i] = qnn::from_code<input_t>(input_code_t(inputs[s * N_IN + i]));
        {design}(x, {names});
{copies}"""
    copies = "".join(f"""        for (unsigned t = 0; t < {port.constant('TOKENS')}; t++) {{
            const {port.type_name('token')} y = {port.name}_stream.read();
            for (unsigned o = 0; o < {port.constant('TOKEN_SIZE')}; o++)
                got[{port.at}t * {port.constant('TOKEN_SIZE')} + o] = qnn::to_code<{port.type_name('code')}>(y.data[o]).to_int64();
        }}
""" for port in ports)
    return f"""        for (unsigned t = 0; t < IN_TOKENS; t++) {{
            input_token_t x;
            for (unsigned i = 0; i < IN_TOKEN_SIZE; i++)
                x.data[i] = qnn::from_code<input_t>(input_code_t(inputs[s * N_IN + t * IN_TOKEN_SIZE + i]));
            x_stream.write(x);
        }}
        {design}(x_stream, {", ".join(f"{port.name}_stream" for port in ports)});
{copies}"""


def _report(ports) -> str:
    """The mismatch line: the flat output index for one port, the port and its index for several."""
    if len(ports) == 1:
        return ('            if (mismatches < MAX_REPORTED)\n'
                '                std::printf("mismatch: sample %u, output %u: got %lld, expected %lld\\n", s, o, got[o], want);\n')
    return ('            if (mismatches < MAX_REPORTED) {\n'
            '                unsigned port = 0;\n'
            '                while (o >= OUT_OFFSETS[port + 1]) port++;\n'
            '                std::printf("mismatch: sample %u, output y%u[%u]: got %lld, expected %lld\\n", s, port,\n'
            '                            o - OUT_OFFSETS[port], got[o], want);\n'
            '            }\n')


def testbench_cpp(top: str, io: str, ports, spelling: Spelling, header: str) -> str:
    """tb/<top>_test.cpp: exit code 0 when every output code matches, 1 otherwise.

    ports: the design's output ports (hlsgen.firmware.OutputPort), in the graph's output order;
    a line of tb_output_codes.dat holds their codes one port after the other."""
    design = spelling.design.format(top=top)
    streams = ("    qnn::stream<input_token_t> x_stream;  // IN_TOKENS tokens per sample (channels last)\n" +
               "".join(f"    qnn::stream<{port.type_name('token')}> {port.name}_stream;\n" for port in ports)
               if io == "stream" else "")
    done = spelling.exit
    starts = ", ".join(port.constant("OFFSET") for port in ports)
    offsets = ("" if len(ports) == 1 else
               "// Where each output port's codes start in a line of tb_output_codes.dat (and where they end).\n"
               f"const unsigned OUT_OFFSETS[N_OUTPUTS + 1] = {{{starts}, N_OUT}};\n\n")
    names = ", ".join(port.name for port in ports)
    what = ("the output codes" if len(ports) == 1 else
            f"the codes of its {len(ports)} outputs ({names}, one after the other on a line)")
    return f"""{header}// {spelling.title}
//
// Runs every sample of tb_data/tb_input_codes.dat (one sample per line, N_IN integer codes,
// channels last)
// through {top} and compares {what} with tb_data/tb_output_codes.dat, the
// bit-exact results of the Python interpreter. Codes are the raw bits of the fixed-point
// ports, so the comparison is exact.
//
// Usage: <binary> [tb_data directory]   (default: tb_data, relative to the working directory)
// Exit code: 0 when every output code matches; 1 on any mismatch or unreadable data.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../firmware/{top}.h"
{spelling.includes}
namespace {{

const unsigned MAX_REPORTED = {MAX_REPORTED};  // mismatch lines printed; every mismatch is counted

{offsets}// Appends the codes of `path` (`width` integers per non-blank line) to `codes` and counts the lines.
bool read_codes(const std::string &path, unsigned width, std::vector<long long> &codes, unsigned &samples) {{
    std::ifstream file(path.c_str());
    if (!file) {{
        std::fprintf(stderr, "cannot open %s\\n", path.c_str());
        return false;
    }}
    std::string line;
    unsigned line_number = 0;
    samples = 0;
    while (std::getline(file, line)) {{
        line_number++;
        std::istringstream fields(line);
        long long value = 0;
        unsigned count = 0;
        while (fields >> value) {{
            codes.push_back(value);
            count++;
        }}
        if (!fields.eof()) {{
            std::fprintf(stderr, "%s:%u: not an integer code\\n", path.c_str(), line_number);
            return false;
        }}
        if (count == 0) continue;  // blank line
        if (count != width) {{
            std::fprintf(stderr, "%s:%u: %u codes, expected %u\\n", path.c_str(), line_number, count, width);
            return false;
        }}
        samples++;
    }}
    return true;
}}

}}  // namespace

{spelling.main} {{
    const std::string data = argc > 1 ? std::string(argv[1]) : std::string("tb_data");
    std::vector<long long> inputs, expected;
    unsigned n_inputs = 0, n_expected = 0;
    if (!read_codes(data + "/tb_input_codes.dat", N_IN, inputs, n_inputs) ||
        !read_codes(data + "/tb_output_codes.dat", N_OUT, expected, n_expected)) {{
        {done}(1);
    }}
    if (n_inputs == 0 || n_inputs != n_expected) {{
        std::fprintf(stderr, "%u input samples but %u expected outputs in %s\\n", n_inputs, n_expected, data.c_str());
        {done}(1);
    }}
{streams}    unsigned mismatches = 0;
    for (unsigned s = 0; s < n_inputs; s++) {{
        long long got[N_OUT];
{_call(io, design, ports)}        for (unsigned o = 0; o < N_OUT; o++) {{
            const long long want = expected[s * N_OUT + o];
            if (got[o] == want) continue;
{_report(ports)}            mismatches++;
        }}
    }}
    if (mismatches > MAX_REPORTED) std::printf("(%u more mismatches not shown)\\n", mismatches - MAX_REPORTED);
    std::printf("%u samples, %u mismatches\\n", n_inputs, mismatches);
    {done}(mismatches ? 1 : 0);
}}
"""
