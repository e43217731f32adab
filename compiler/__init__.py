"""Compiler: the IR, the op table, the passes and the program description backends consume.
Imports nothing else of graphjit's."""
from .errors import GraphjitError
from .ir import Graph, Node
from .ops import OPS, Op, OpDef, OpKind

__all__ = ["GraphjitError", "Graph", "Node", "OPS", "Op", "OpDef", "OpKind"]
