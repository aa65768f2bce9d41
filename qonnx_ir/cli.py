"""The `qonnx` command.

Verbs are not imported here: every package registers its own in the
`qonnx.commands` entry-point group (pyproject.toml). An entry point is a function
`register(subparsers)` that adds one sub-parser and sets `func=handler` on it; the
handler takes the parsed arguments and returns an exit code (or None for 0).
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

from .errors import CheckFailed, QonnxError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes are bad input too: one line, exit code 2 (contract 6)."""

    def error(self, message):
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="qonnx",
        description="PyTorch/Brevitas -> QONNX -> exact fixed-point hardware dialect -> HLS.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=OneLineParser)
    for entry in sorted(entry_points(group="qonnx.commands"), key=lambda e: e.name):
        try:
            register = entry.load()
        except ImportError as error:  # one broken package must not take every verb down
            subparsers.add_parser(entry.name, help=f"(unavailable: {error})").set_defaults(
                func=_unavailable(entry.name, error))
            continue
        register(subparsers)
    return parser


def _unavailable(verb: str, error: ImportError):
    def handler(args):
        raise QonnxError(f"the '{verb}' verb cannot load: {error}")

    return handler


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2, already printed in one line)
        return int(exit_.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        code = args.func(args)
    except QonnxError as error:
        if args.debug:
            raise
        print(f"qonnx {args.verb}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except CheckFailed as failure:
        print(f"qonnx {args.verb}: check failed: {failure}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    return EXIT_OK if code is None else int(code)


if __name__ == "__main__":
    sys.exit(main())
