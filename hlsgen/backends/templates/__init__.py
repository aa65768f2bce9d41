"""Text shared by both backends' vendor files: the testbench body and the README's interface part.

A backend only supplies its spelling (plain `main` or SCVerify's `CCS_MAIN`, the header
folders, the tool command); the testbench logic and the interface documentation are
written once here, so a fix reaches both backends.
"""

from .readme import gxx_command, interface_markdown
from .testbench import Spelling, testbench_cpp

__all__ = ["Spelling", "gxx_command", "interface_markdown", "testbench_cpp"]
