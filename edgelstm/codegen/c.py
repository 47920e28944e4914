"""Small C code generation helpers shared by the TFLite Micro exporter and the C engine.

* `c_identifier(name)`: any string -> a valid, non-reserved C/C++ identifier (or BadInputError).
* `check_identifier(name)`: BadInputError unless `name` already is one.
* `format_bytes(data)`: the body of a `const unsigned char` initialiser, 12 bytes a line.
* `c_float(value)`: a float32 literal that round-trips exactly.
* `ALIGN_MACROS` / `align_macro(prefix)`: a portable 16-byte alignment macro for C99..C++17.
"""

from __future__ import annotations

import math
import re

from edgelstm.errors import BadInputError

# Keywords of C (C89..C23) and C++ (C++98..C++23), plus alternative operator spellings: none of
# them may name a symbol in a file that must compile as both languages.
_KEYWORDS = """
    auto break case char const continue default do double else enum extern float for goto if
    inline int long register restrict return short signed sizeof static struct switch typedef
    union unsigned void volatile while _Alignas _Alignof _Atomic _BitInt _Bool _Complex _Decimal128
    _Decimal32 _Decimal64 _Generic _Imaginary _Noreturn _Static_assert _Thread_local alignas
    alignof bool constexpr false nullptr static_assert thread_local true typeof typeof_unqual
    and and_eq asm bitand bitor catch char8_t char16_t char32_t class co_await co_return co_yield
    compl concept const_cast consteval constinit decltype delete dynamic_cast explicit export
    friend mutable namespace new noexcept not not_eq operator or or_eq private protected public
    reinterpret_cast requires static_cast template this throw try typeid typename using virtual
    wchar_t xor xor_eq
"""
C_RESERVED: frozenset[str] = frozenset(_KEYWORDS.split())

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Identifiers reserved for the implementation in both languages.
_IMPL_RESERVED = re.compile(r"^(_[A-Z_]|.*__)")
MAX_IDENTIFIER = 63  # C99 guarantees 63 significant characters for internal identifiers


def check_identifier(name: str) -> str:
    """Return `name` if it is a valid, unreserved C and C++ identifier; BadInputError otherwise."""
    if not _IDENT.match(name):
        raise BadInputError(f"'{name}' is not a valid C identifier")
    if name in C_RESERVED:
        raise BadInputError(f"'{name}' is a reserved word in C or C++")
    if _IMPL_RESERVED.match(name):
        raise BadInputError(
            f"'{name}' is reserved for the compiler (leading '_' + capital, or '__')"
        )
    if len(name) > MAX_IDENTIFIER:
        raise BadInputError(f"'{name}' is longer than {MAX_IDENTIFIER} characters")
    return name


def c_identifier(name: str) -> str:
    """Sanitise `name` into a C identifier: non [A-Za-z0-9_] -> '_', runs collapsed, no leading
    digit; then `check_identifier` (so a reserved word or an empty result is an error)."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name)
    ident = re.sub(r"_{2,}", "_", ident).strip("_")
    if ident and ident[0].isdigit():
        ident = "m_" + ident
    if not ident:
        raise BadInputError(f"'{name}' has no characters usable in a C identifier")
    return check_identifier(ident)


def format_bytes(data: bytes, per_line: int = 12, indent: str = "    ") -> str:
    """Comma-separated `0xNN` lines for a C array initialiser (no braces, no trailing comma)."""
    if per_line < 1:
        raise ValueError("per_line must be >= 1")
    lines = []
    for start in range(0, len(data), per_line):
        chunk = data[start : start + per_line]
        lines.append(indent + ", ".join(f"0x{b:02x}" for b in chunk))
    return ",\n".join(lines)


def c_float(value: float) -> str:
    """A C `float` literal that parses back to the same float32 ('0.0f', '1.52587891e-05f')."""
    if not math.isfinite(value):
        raise ValueError(f"cannot write {value} as a C literal")
    text = f"{value:.9g}"
    if not any(c in text for c in ".en"):
        text += ".0"
    return text + "f"


def align_macro(prefix: str, alignment: int = 16) -> str:
    """Preprocessor text defining `<prefix>_ALIGN` as the best alignment syntax available:
    alignas (C++11), _Alignas (C11), __attribute__ (GCC/Clang C99), __declspec (MSVC)."""
    m = f"{prefix}_ALIGN"
    return (
        f"#if defined(__cplusplus) && __cplusplus >= 201103L\n"
        f"#define {m} alignas({alignment})\n"
        f"#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L\n"
        f"#define {m} _Alignas({alignment})\n"
        f"#elif defined(__GNUC__) || defined(__clang__)\n"
        f"#define {m} __attribute__((aligned({alignment})))\n"
        f"#elif defined(_MSC_VER)\n"
        f"#define {m} __declspec(align({alignment}))\n"
        f"#else\n"
        f"#define {m}\n"
        f"#endif"
    )
