"""The `graphjit` console script: look inside a compilation, time it, manage the disk cache."""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from graphjit.compiler.errors import GraphjitError

EXAMPLE_ARGS_HELP = """\
example inputs:
  FILE.py provides the arguments to call FUNC with, by one of these functions (the first found):
    example_args_FUNC()   returns a tuple of positional arguments for FUNC only
    example_args()        returns a tuple of positional arguments for every function in FILE.py
  FUNC may be a @gj.jit function or a plain NumPy function (it is wrapped with gj.jit).
  FILE.py is imported, not run: keep demo code under `if __name__ == "__main__":`.

examples:
  graphjit dump examples/quickstart.py:block
  graphjit dump examples/quickstart.py:block --stage llvm
  graphjit dump examples/softmax.py:softmax --render softmax.svg
  graphjit bench examples/mlp.py:mlp
  graphjit profile examples/mlp.py:mlp
  graphjit cache info
"""


class CLIError(Exception):
    """A mistake in the command line or the target file: printed without a traceback."""


# ------------------------------------------------------------------ loading FILE.py:FUNC
def split_target(target: str) -> tuple[str, str]:
    """`path/to/file.py:func` -> (path, func). The last ':' splits, so Windows drives work."""
    path, sep, name = target.rpartition(":")
    if not sep or not path or not name or not name.isidentifier():
        raise CLIError(f"expected FILE.py:FUNC, got {target!r}")
    return path, name


def load_module(path: str) -> ModuleType:
    """Import FILE.py as a module (its folder first on sys.path, so sibling imports work)."""
    if not os.path.isfile(path):
        raise CLIError(f"no such file: {path}")
    folder = os.path.dirname(os.path.abspath(path))
    module_name = "_graphjit_cli_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise CLIError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    finally:
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)
    return module


def _candidates(module: ModuleType) -> list[str]:
    from graphjit.jit import JitFunction

    return sorted(name for name, value in vars(module).items()
                  if isinstance(value, JitFunction) or name.startswith("example_args_"))


def find_function(module: ModuleType, name: str, path: str) -> Any:
    function = getattr(module, name, None)
    if not callable(function):
        found = ", ".join(_candidates(module)) or "none"
        raise CLIError(f"{path} has no function {name!r} (jitted functions and example_args_* "
                       f"there: {found})")
    return function


def example_args(module: ModuleType, name: str, path: str) -> tuple:
    """The arguments for FUNC: `example_args_FUNC()` if defined, else `example_args()`."""
    maker = getattr(module, f"example_args_{name}", None) or getattr(module, "example_args", None)
    if maker is None:
        raise CLIError(f"{path} defines neither example_args_{name}() nor example_args(): add one "
                       "that returns a tuple of arguments (see `graphjit --help`)")
    args = maker()
    return tuple(args) if isinstance(args, (tuple, list)) else (args,)


def as_jitted(function: Callable) -> Any:
    from graphjit.jit import JitFunction, jit

    return function if isinstance(function, JitFunction) else jit(function)


def load_target(target: str) -> tuple[Any, tuple]:
    """(the jitted function, its example arguments) for `FILE.py:FUNC`."""
    path, name = split_target(target)
    module = load_module(path)
    return as_jitted(find_function(module, name, path)), example_args(module, name, path)


# ------------------------------------------------------------------ commands
def command_dump(options: argparse.Namespace) -> int:
    function, args = load_target(options.target)
    lowered = function.lower(*args)
    if options.stage == "list":
        print("\n".join(lowered.stages()))
    elif options.stage:
        try:
            print(lowered.as_text(options.stage))
        except KeyError as exc:
            raise CLIError(exc.args[0]) from None
    else:
        for stage in lowered.stages():
            print(f"==== {stage} ====")
            print(lowered.as_text(stage).rstrip("\n"))
            print()
    if options.render:
        print(f"picture written to {lowered.render(options.render)}")
    return 0


def command_bench(options: argparse.Namespace) -> int:
    from graphjit.benchmarking import benchmark

    function, args = load_target(options.target)
    result = benchmark(function, *args, repeat=options.repeat, min_time=options.min_time)
    print(result)
    return 0 if result.agree else 1


def command_profile(options: argparse.Namespace) -> int:
    from graphjit.profiling import profile

    function, args = load_target(options.target)
    result = profile(function, *args, min_time=options.min_time, eager=not options.no_eager)
    print(result)
    return 0


def _cache_module() -> ModuleType | None:
    try:
        return importlib.import_module("graphjit.cache")
    except ModuleNotFoundError as exc:
        if exc.name in ("graphjit.cache", "graphjit"):
            return None
        raise


def _print_info(info: Any) -> None:
    if isinstance(info, dict):
        width = max((len(str(k)) for k in info), default=0)
        for key, value in info.items():
            print(f"{str(key).ljust(width)}  {value}")
    elif info is not None:
        print(info)


def supported_markdown() -> str:
    """The README's list of traced NumPy functions, from the tracer's registries."""
    from graphjit.frontend.numpy_api import supported_names

    lines = []
    for kind, names in supported_names().items():
        lines.append(f"- **{kind}** ({len(names)}): " + ", ".join(f"`{n}`" for n in names))
    return "\n".join(lines)


def command_functions(options: argparse.Namespace) -> int:
    print(supported_markdown())
    return 0


def command_cache(options: argparse.Namespace) -> int:
    cache = _cache_module()
    if cache is None:
        print("graphjit: the disk cache (graphjit.cache) is not part of this installation; "
              "nothing to show or clear", file=sys.stderr)
        return 1
    if options.action == "info":
        _print_info(cache.info())
    else:
        result = cache.clear()
        print("graphjit: disk cache cleared" + (f" ({result})" if result is not None else ""))
    return 0


# ------------------------------------------------------------------ argument parsing
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="graphjit", description="Inspect, time and cache graphjit compilations.",
        epilog=EXAMPLE_ARGS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dump = commands.add_parser(
        "dump", help="print the stages of compiling FILE.py:FUNC", epilog=EXAMPLE_ARGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    dump.add_argument("target", metavar="FILE.py:FUNC")
    dump.add_argument("--stage", metavar="NAME",
                      help="print only this stage (traced, a pass name, optimized, program, llvm, "
                           "asm, ...); 'list' prints the stage names")
    dump.add_argument("--render", metavar="PATH",
                      help="also draw the graph to PATH (.svg/.png/.pdf)")
    dump.set_defaults(run=command_dump)

    bench = commands.add_parser(
        "bench", help="time FILE.py:FUNC eager (NumPy) vs compiled", epilog=EXAMPLE_ARGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_argument("target", metavar="FILE.py:FUNC")
    bench.add_argument("--repeat", type=int, default=7, help="samples per side (default 7)")
    bench.add_argument("--min-time", type=float, default=0.02,
                       help="seconds per sample at least (default 0.02)")
    bench.set_defaults(run=command_bench)

    profile = commands.add_parser(
        "profile", help="time every kernel, BLAS call and host step of FILE.py:FUNC",
        epilog=EXAMPLE_ARGS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    profile.add_argument("target", metavar="FILE.py:FUNC")
    profile.add_argument("--min-time", type=float, default=0.2,
                         help="seconds spent timing the kernels, at least (default 0.2)")
    profile.add_argument("--no-eager", action="store_true",
                         help="do not time the undecorated function for comparison")
    profile.set_defaults(run=command_profile)

    functions = commands.add_parser(
        "functions", help="list the NumPy functions, ufuncs and methods graphjit traces "
                          "(markdown, as in the README)")
    functions.set_defaults(run=command_functions)

    cache = commands.add_parser("cache", help="show or clear the persistent compilation cache")
    cache.add_argument("action", choices=("info", "clear"))
    cache.set_defaults(run=command_cache)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    try:
        return options.run(options)
    except (CLIError, GraphjitError) as exc:
        print(f"graphjit: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
