"""Bounds a pickle stream before it is unpickled: lengths, nesting, memo and object counts.

``pickle.Unpickler`` trusts its input's shape. A 15-byte stream whose length field says 2**60
makes it allocate that much (``MemoryError``); a memo index of 2**32 resizes the memo table to
match; a dictionary key that is a tuple nested 100,000 deep crashes the interpreter with a
segmentation fault when the key is hashed (CPython's tuple hash recurses in C, unchecked); a
tuple built as ``(t, t)`` sixty times over is tiny on disk but hashing it never ends.

:func:`scan_pickle` walks the opcodes first (``pickletools.genops``, a loop, no recursion) and
simulates the unpickler's stack with one small record per object: its nesting depth and, for
the hashable containers (tuples, frozensets), the number of nodes a hash or comparison walks.
It refuses, with a :class:`~atgan_plugin.checkpoints.CheckpointError`, every declared length
longer than what is left of the data, memo indices beyond the next free one, nesting deeper
than :data:`MAX_DEPTH`, hashable containers larger than :data:`MAX_HASHED_NODES`, more than
:data:`MAX_OBJECTS` objects, out-of-band buffers and extension codes. It says nothing about
which globals may be called: that is the whitelist's job (:mod:`.snapshot`).

Mutable containers changed after they were nested (a list appended to after it went into
another list) make their recorded depth an underestimate; hashing never walks into them (they
are unhashable), and the reader's own walks over the result are bounded separately.
"""

from __future__ import annotations

import io
import pickletools
from typing import cast

from atgan_plugin.checkpoints import CheckpointError

__all__ = ["MAX_DEPTH", "MAX_HASHED_NODES", "MAX_OBJECTS", "scan_pickle"]

MAX_DEPTH = 100  # a StyleGAN2-ADA snapshot nests about 40 deep
MAX_HASHED_NODES = 10_000  # nodes under one tuple or frozenset (its hash and == walk them all)
MAX_OBJECTS = 2_000_000  # objects pushed; a 1024-px snapshot holds tens of thousands

_ATOMS = frozenset(
    {
        "INT",
        "BININT",
        "BININT1",
        "BININT2",
        "LONG",
        "LONG1",
        "LONG4",
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
        "BINBYTES",
        "SHORT_BINBYTES",
        "BINBYTES8",
        "NONE",
        "NEWTRUE",
        "NEWFALSE",
        "UNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "FLOAT",
        "BINFLOAT",
        "GLOBAL",
        "PERSID",
    }
)
_EMPTY_CONTAINERS = frozenset({"EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET", "BYTEARRAY8"})
# Opcodes that build one object from the items above the mark -> whether that object is hashable.
_FROM_MARK = {"TUPLE": True, "FROZENSET": True, "LIST": False, "DICT": False, "INST": False, "OBJ": False}
_ADD_FROM_MARK = frozenset({"APPENDS", "SETITEMS", "ADDITEMS"})
_ADD = {"APPEND": 1, "SETITEM": 2, "BUILD": 1}  # items popped and added to the object below them
_CALLS = {"REDUCE": 2, "NEWOBJ": 2, "NEWOBJ_EX": 3, "STACK_GLOBAL": 2, "BINPERSID": 1}  # items popped -> one result
_REFUSED = frozenset({"NEXT_BUFFER", "READONLY_BUFFER", "EXT1", "EXT2", "EXT4"})


class _Node:
    """One simulated object: how deep it nests and, if hashable, how many nodes hashing it visits."""

    __slots__ = ("depth", "hashable", "nodes")

    def __init__(self, depth: int = 0, nodes: int = 1, hashable: bool = False):
        self.depth, self.nodes, self.hashable = depth, nodes, hashable


_ATOM = _Node(0, 1, True)  # shared: atoms never change


def _combine(items: list[_Node], hashable: bool, where: int) -> _Node:
    depth = 1 + max((item.depth for item in items), default=0)
    nodes = 1 + sum(item.nodes for item in items) if hashable else 1
    if depth > MAX_DEPTH:
        raise CheckpointError(f"the pickle nests objects more than {MAX_DEPTH} deep (at byte {where})")
    if hashable and nodes > MAX_HASHED_NODES:
        raise CheckpointError(
            f"the pickle builds a tuple of more than {MAX_HASHED_NODES} nested items (at byte {where})"
        )
    return _Node(depth, nodes, hashable)


def scan_pickle(data: bytes | bytearray, start: int = 0) -> int:
    """Checks the pickle that starts at ``data[start]``; returns the offset just after its STOP.

    Raises:
        CheckpointError: truncated, corrupt, or beyond the bounds in the module docstring.
    """
    stream = io.BytesIO(data)
    stream.seek(start)
    stack: list[_Node] = []
    marks: list[int] = []
    memo: dict[int, _Node] = {}
    objects = 0

    def pop(count: int, at: int) -> list[_Node]:
        floor = marks[-1] if marks else 0
        if len(stack) - count < floor:
            raise CheckpointError(f"the pickle pops more objects than it pushed (at byte {at})")
        items = stack[len(stack) - count :]
        del stack[len(stack) - count :]
        return items

    def pop_mark(at: int) -> list[_Node]:
        if not marks:
            raise CheckpointError(f"the pickle closes a mark it never opened (at byte {at})")
        floor = marks.pop()
        items = stack[floor:]
        del stack[floor:]
        return items

    def top(at: int) -> _Node:
        if len(stack) <= (marks[-1] if marks else 0):
            raise CheckpointError(f"the pickle uses an object it never pushed (at byte {at})")
        return stack[-1]

    def add_to_top(items: list[_Node], at: int) -> None:
        # A container filled in place: an underestimate once it is nested (module docstring).
        node = top(at)
        if node is _ATOM:
            node = stack[-1] = _Node()
        node.depth = max(node.depth, _combine(items, False, at).depth)

    try:
        for opcode, arg, position in pickletools.genops(stream):
            at = start + (position or 0)
            name = opcode.name
            if name in _REFUSED:
                raise CheckpointError(f"the pickle uses {name}, which a network snapshot never needs (at byte {at})")
            if name == "PROTO":
                if not 0 <= cast(int, arg) <= 5:  # pickletools decodes PROTO's and FRAME's arguments as ints
                    raise CheckpointError(f"unknown pickle protocol {arg} (at byte {at})")
                continue
            if name == "FRAME":
                if cast(int, arg) > len(data) - stream.tell():
                    raise CheckpointError(
                        f"the pickle is truncated: a frame of {arg} bytes at byte {at} runs past the end"
                    )
                continue
            if name in _ATOMS or name in _EMPTY_CONTAINERS or name == "EMPTY_TUPLE":
                stack.append(_ATOM if name in _ATOMS or name == "EMPTY_TUPLE" else _Node())
            elif name in _FROM_MARK:
                stack.append(_combine(pop_mark(at), _FROM_MARK[name], at))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                stack.append(_combine(pop(int(name[-1]), at), True, at))
            elif name in _ADD_FROM_MARK:
                add_to_top(pop_mark(at), at)
            elif name in _ADD:
                add_to_top(pop(_ADD[name], at), at)
            elif name in _CALLS:
                stack.append(_combine(pop(_CALLS[name], at), False, at))
            elif name == "MARK":
                if len(marks) >= MAX_DEPTH:
                    raise CheckpointError(f"the pickle opens more than {MAX_DEPTH} marks (at byte {at})")
                marks.append(len(stack))
            elif name == "POP":
                if marks and len(stack) == marks[-1]:
                    marks.pop()
                else:
                    pop(1, at)
            elif name == "POP_MARK":
                pop_mark(at)
            elif name == "DUP":
                stack.append(top(at))
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise CheckpointError(f"the pickle reads memo entry {arg}, which it never stored (at byte {at})")
                stack.append(memo[arg])
            elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                index = len(memo) if name == "MEMOIZE" else cast(int, arg)  # PUT's argument: an int
                if not 0 <= index <= len(memo):  # picklers number memo entries 0, 1, 2, ...
                    raise CheckpointError(
                        f"the pickle stores memo entry {index} with only {len(memo)} in use (at byte {at})"
                    )
                memo[index] = top(at)
            elif name == "STOP":
                pop(1, at)
                return stream.tell()
            else:
                raise CheckpointError(
                    f"the pickle uses the opcode {name}, which this reader does not expect (at byte {at})"
                )
            objects += 1
            if objects > MAX_OBJECTS:
                raise CheckpointError(f"the pickle holds more than {MAX_OBJECTS} objects")
    except CheckpointError:
        raise
    except (ValueError, TypeError, OverflowError, MemoryError) as error:  # genops: short arguments, unknown opcodes
        reason = "truncated" if "exhausted" in str(error) or "but only" in str(error) else "corrupt"
        raise CheckpointError(f"the pickle is {reason}: {error}") from None
    raise CheckpointError("the pickle is truncated: it ends before its STOP opcode")
