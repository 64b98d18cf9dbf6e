"""The `pygreeter` plugin: the `polyglot` world written in Python.

It answers everything the Rust `greeter` answers, with the same values, and
shows what a Python handler can do through the host: log, learn its region
and call another plugin (`visit`).

componentize-py turns this module into a WebAssembly component: the class
`WitWorld` implements the world's own exports (served as `pygreeter.greet`,
`pygreeter.add`, ...) and the class `Echo` its `echo` interface (served as
`pygreeter.echo.echo-record`, ...). `cargo xtask plugins` builds it; by
hand, from this folder, after a first `cargo xtask plugins` has staged the
WIT in `../target/polyglot-wit`:

    componentize-py -d ../target/polyglot-wit -w polyglot componentize app -o ../target/pygreeter.wasm

`componentize-py -d ../target/polyglot-wit -w polyglot bindings DIR` writes
the Python API it generates (the `wit_world` package) into DIR, to read.

WIT types arrive as plain Python values: strings, ints, floats, bytes,
`None` for an empty `option`, tuples, and dataclasses, enums and flags from
the generated `wit_world` package. A `result`'s error is returned by raising
`Err(value)`; any other exception traps the call.
"""

import math

import wit_world
from componentize_py_types import Err, Result, Some
from wit_world import Language, Problem, Shape, Shape_Circle, Shape_Point, Shape_Rectangle, Style, Visit
from wit_world.exports import echo
from wit_world.imports import host
from wit_world.imports.types import CallError, Level

import cbor

GREETINGS = {
    Language.ENGLISH: "Hello",
    Language.FRENCH: "Bonjour",
    Language.SPANISH: "Hola",
}


class WitWorld(wit_world.WitWorld):
    def greet(self, name: str, title: str | None, lang: Language) -> str:
        hello = GREETINGS[lang]
        if title is None:
            return f"{hello}, {name}!"
        return f"{hello}, {title} {name}!"

    def decorate(self, text: str, style: Style) -> str:
        if Style.SHOUT in style:
            text = text.upper()
        if Style.BOLD in style:
            text = f"**{text}**"
        if Style.ITALIC in style:
            text = f"_{text}_"
        return text

    def area(self, shape: Shape) -> float:
        match shape:
            case Shape_Circle(r):
                return math.pi * r * r
            case Shape_Rectangle((width, height)):
                return width * height
            case Shape_Point():
                return 0.0

    def initial(self, name: str) -> str | None:
        return name[0] if name else None

    def checksum(self, data: bytes) -> tuple[int, bytes]:
        return sum(data), data[::-1]

    def frame(self, label: str, body: bytes) -> bytes:
        if not body:
            raise Err(f"nothing to frame under `{label}`")
        return label.encode() + b":" + body

    def add(self, a: int, b: int) -> int:
        # Python ints never overflow: wrap into s64 by hand, as Rust's
        # `wrapping_add` does.
        return (a + b + 2**63) % 2**64 - 2**63

    def language(self) -> str:
        return "python"

    def visit(self, name: str) -> Visit:
        host.log(Level.INFO, f"visiting {name}")
        region = host.region()
        # Arguments go as a CBOR array in parameter order: name, title, lang.
        args = cbor.encode([name, None, "english"])
        try:
            reply = host.call("greeter.greet", args)
        except Err as failed:
            raise Err(describe(failed.value)) from None
        return Visit(region=region, greeting=cbor.decode_text(reply), language=self.language())

    def check(self, n: int) -> int:
        # The `problem` reaches the caller as the detail of a `handler_error`.
        if n < 0:
            raise Err(Problem(code=400, reason=f"{n} is negative"))
        if n % 2:
            raise Err(Problem(code=422, reason=f"{n} is odd"))
        return n // 2

    def crash(self, message: str) -> None:
        # Not caught anywhere: the traceback goes to the plugin's stderr,
        # which the host logs, and the call ends with a trap.
        raise RuntimeError(message)

    def spin(self) -> None:
        # The host interrupts the loop at the call's deadline.
        while True:
            pass

    def hog(self, mib: int) -> int:
        # Growing the memory past the plugin's limit fails the call here.
        memory = bytearray(mib << 20)
        # Touch every 64 KiB WebAssembly page, so all of it is really used.
        for page in range(0, len(memory), 1 << 16):
            memory[page] = 1
        return mib


def describe(error: CallError) -> str:
    """A failed nested call as `visit`'s error: `"<code>: <message>"`, the
    code spelled as the WIT case (`ErrorCode.PERMISSION_DENIED` is
    `permission-denied`)."""
    code = error.code.name.lower().replace("_", "-")
    return f"{code}: {error.message}"


class Echo(wit_world.exports.Echo):
    """Identity functions: each returns its argument unchanged."""

    def echo_bool(self, v: bool) -> bool:
        return v

    def echo_s8(self, v: int) -> int:
        return v

    def echo_u8(self, v: int) -> int:
        return v

    def echo_s16(self, v: int) -> int:
        return v

    def echo_u16(self, v: int) -> int:
        return v

    def echo_s32(self, v: int) -> int:
        return v

    def echo_u32(self, v: int) -> int:
        return v

    def echo_s64(self, v: int) -> int:
        return v

    def echo_u64(self, v: int) -> int:
        return v

    def echo_f32(self, v: float) -> float:
        return v

    def echo_f64(self, v: float) -> float:
        return v

    def echo_char(self, v: str) -> str:
        return v

    def echo_string(self, v: str) -> str:
        return v

    def echo_bytes(self, v: bytes) -> bytes:
        return v

    def echo_list(self, v: list[str]) -> list[str]:
        return v

    def echo_tuple(self, v: tuple[int, str, bool]) -> tuple[int, str, bool]:
        return v

    def echo_record(self, v: echo.Person) -> echo.Person:
        return v

    def echo_variant(self, v: echo.Payload) -> echo.Payload:
        return v

    def echo_enum(self, v: echo.Color) -> echo.Color:
        return v

    def echo_option(self, v: str | None) -> str | None:
        return v

    def echo_nested_option(self, v: Some[int | None] | None) -> Some[int | None] | None:
        # `Some(None)` is `some(none)`; a bare `None` is `none`.
        return v

    # A `result` parameter arrives as `Ok(value)` or `Err(value)`; returning
    # a `result` means returning the ok value or raising the `Err`.
    def echo_result(self, v: Result[str, int]) -> str:
        if isinstance(v, Err):
            raise v
        return v.value

    def echo_unit_result(self, v: Result[None, None]) -> None:
        if isinstance(v, Err):
            raise v

    def echo_flags(self, v: echo.Perms) -> echo.Perms:
        return v

    def echo_list_of_records(self, v: list[echo.Person]) -> list[echo.Person]:
        return v
