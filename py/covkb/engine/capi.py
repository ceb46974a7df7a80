"""Facts into clingo and shown atoms out of it through clingo's C API.

The Python API wraps every symbol it creates or reads in an object and allocates
fresh C buffers for each call; for a batch of cases, that is most of the time spent
outside grounding. This module calls the same C functions (clingo.h:
clingo_symbol_create_function, clingo_backend_add_atom, clingo_backend_rule,
clingo_model_symbols, clingo_symbol_arguments) with buffers allocated once, through
the cffi module the clingo package itself uses. Case data still enters as symbols
through the backend; nothing here writes program text.

Symbols are clingo's 64-bit handles (the `_rep` of a clingo.Symbol). clingo interns
strings and function symbols for the life of a process, so a handle can be cached.

`AVAILABLE` is false when the installed clingo package is not built this way; covkb
then uses the Python API (as it does when COVKB_PUBLIC_API is set), with equal results.
"""

from __future__ import annotations

import os
import threading
from typing import Sequence

import clingo

try:  # the cffi module clingo's own Python API is built on
    from clingo._internal import _ffi as ffi, _lib as lib

    AVAILABLE = all(hasattr(lib, name) for name in (
        "clingo_symbol_create_function", "clingo_symbol_create_number", "clingo_symbol_create_string",
        "clingo_symbol_create_id",
        "clingo_backend_add_atom", "clingo_backend_rule", "clingo_model_symbols_size",
        "clingo_model_symbols", "clingo_symbol_name", "clingo_symbol_arguments",
        "clingo_symbol_number", "clingo_symbol_type"))
except ImportError:  # pragma: no cover - depends on how clingo was built
    ffi = lib = None
    AVAILABLE = False


def enabled() -> bool:
    return AVAILABLE and not os.environ.get("COVKB_PUBLIC_API")


def _check(ok: bool) -> None:
    if not ok:
        code = lib.clingo_error_code()
        message = ffi.string(lib.clingo_error_message()).decode(errors="replace")
        if code == lib.clingo_error_bad_alloc:
            raise MemoryError(message)
        raise RuntimeError(message)


# cffi releases the GIL around each C call: every thread needs its own output slot.
_slots = threading.local()


def _slot():
    try:
        return _slots.out
    except AttributeError:
        out = _slots.out = ffi.new("clingo_symbol_t*")
        return out


def number(value: int) -> int:
    out = _slot()
    lib.clingo_symbol_create_number(value, out)
    return out[0]


def string(value: str) -> int:
    out = _slot()
    _check(lib.clingo_symbol_create_string(value.encode(), out))
    return out[0]


def constant(name: str) -> int:
    out = _slot()
    _check(lib.clingo_symbol_create_id(name.encode(), True, out))
    return out[0]


def writer(backend: clingo.Backend):
    """fact(name, args): adds the fact `name(args...)` to a program through its backend."""
    program = backend._rep
    buffer = ffi.new("clingo_symbol_t[32]")
    symbol = ffi.new("clingo_symbol_t*")
    atom = ffi.new("clingo_atom_t*")
    names: dict[str, bytes] = {}
    create, add, rule, null = (lib.clingo_symbol_create_function, lib.clingo_backend_add_atom,
                               lib.clingo_backend_rule, ffi.NULL)

    def fact(name: str, args: Sequence[int]) -> None:
        encoded = names.get(name)
        if encoded is None:
            encoded = names[name] = name.encode()
        count = len(args)
        buffer[0:count] = args
        if not (create(encoded, buffer, count, True, symbol) and add(program, symbol, atom)
                and rule(program, False, atom, 1, null, 0)):
            _check(False)

    return fact


def atoms(model: clingo.Model, parse):
    """A model's shown atoms as (name, key, (text, parse(text))).

    key is the first argument when it is a number (a case key), else None and the
    text holds every argument. The text is clingo's own form of the arguments after
    the key, e.g. `"3a",met)`; it and its parse are computed once per distinct tuple.
    """
    size = ffi.new("size_t*")
    _check(lib.clingo_model_symbols_size(model._rep, lib.clingo_show_type_shown, size))
    count = size[0]
    shown = ffi.new("clingo_symbol_t[]", count)
    _check(lib.clingo_model_symbols(model._rep, lib.clingo_show_type_shown, shown, count))
    pointer = ffi.new("char**")
    arguments = ffi.new("clingo_symbol_t**")
    value = ffi.new("int*")
    name_of, arguments_of, unpack = lib.clingo_symbol_name, lib.clingo_symbol_arguments, ffi.unpack
    names: dict = {}    # clingo interns names: one char* per name
    keys: dict = {}     # the handle of a number symbol → the number, or None
    texts: dict = {}
    for symbol in unpack(shown, count):
        if not (name_of(symbol, pointer) and arguments_of(symbol, arguments, size)):
            _check(False)
        name = names.get(pointer[0])
        if name is None:
            name = names[pointer[0]] = ffi.string(pointer[0]).decode()
        args = unpack(arguments[0], size[0])
        first = args[0] if args else None
        key = keys.get(first, keys)
        if key is keys:
            key = keys[first] = _number(first, value)
        if key is not None:
            args = args[1:]
        rest = tuple(args)
        # the policy's own atoms (no case key) are the same in every model: read once a process
        seen = texts if key is not None else _POLICY_TEXTS
        read = seen.get(rest)
        if read is None:
            text = ",".join(str(clingo.Symbol(a)) for a in rest) + ")"
            read = seen[rest] = (text, parse(text))
        yield name, key, read


# clingo interns symbols for the life of a process, so a handle tuple always reads the same
_POLICY_TEXTS: dict = {}


def _number(symbol, value):
    if symbol is None or lib.clingo_symbol_type(symbol) != lib.clingo_symbol_type_number:
        return None
    _check(lib.clingo_symbol_number(symbol, value))
    return value[0]
