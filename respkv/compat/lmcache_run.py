"""``python -m respkv.compat.lmcache_run``: run an LMCache command with the ``respkv``
L2 adapter type registered.

LMCache parses ``--l2-adapter`` JSON before it imports anything of a third party, so a
type name of our own (``{"type": "respkv", ...}``) is only known when our module is
imported first. This launcher does that, then hands over to LMCache unchanged:

* ``python -m respkv.compat.lmcache_run server --l2-adapter '{"type": "respkv", ...}'``
  runs ``lmcache server ...`` (any ``lmcache`` subcommand works the same way);
* ``python -m respkv.compat.lmcache_run -m lmcache.v1.basic_check --mode
  test_l2_adapter --l2-adapter '{"type": "respkv"}'`` runs a module as ``python -m``
  would.

Without the launcher, the ``native_plugin`` and ``plugin`` JSON forms need no import of
ours (see :mod:`respkv.compat.lmcache_plugin` and docs/lmcache.md).
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence

__all__ = ["main"]

USAGE = (
    "usage: python -m respkv.compat.lmcache_run LMCACHE_SUBCOMMAND [ARGS...]\n"
    "       python -m respkv.compat.lmcache_run -m MODULE [ARGS...]"
)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    import respkv.compat.lmcache_plugin  # noqa: F401  (registers the "respkv" type)

    if args[0] == "-m":
        if len(args) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        return 0
    from lmcache.cli.main import main as lmcache_main  # type: ignore[import-not-found, import-untyped, unused-ignore]

    sys.argv = ["lmcache", *args]
    result = lmcache_main()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
