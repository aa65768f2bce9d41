"""Names from a model file are untrusted: they become C++ identifiers and file names only here."""

from __future__ import annotations

import re


def identifier(index: int, name: str) -> str:
    """A valid, unique C++ identifier for layer `index`: `l<index>_<name with only [A-Za-z0-9_]>`.

    The prefix makes it start with a letter, keeps it unique, and rules out keywords
    (`namespace` becomes `l3_namespace`); the name part only helps a reader.
    """
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", name)
    cleaned = re.sub(r"_+", "_", cleaned).strip("_")[:48]
    return f"l{index}_{cleaned}" if cleaned else f"l{index}"


def top_name(name: str) -> str:
    """The top function's name: a C identifier, letters first, never a reserved word."""
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = "qnn_" + cleaned
    return cleaned if cleaned not in CPP_KEYWORDS else cleaned + "_top"


CPP_KEYWORDS = frozenset(
    """alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t
    char32_t class compl concept const consteval constexpr constinit const_cast continue co_await
    co_return co_yield decltype default delete do double dynamic_cast else enum explicit export extern
    false float for friend goto if inline int long mutable namespace new noexcept not not_eq nullptr
    operator or or_eq private protected public register reinterpret_cast requires return short signed
    sizeof static static_assert static_cast struct switch template this thread_local throw true try
    typedef typeid typename union unsigned using virtual void volatile wchar_t while xor xor_eq main""".split()
)
