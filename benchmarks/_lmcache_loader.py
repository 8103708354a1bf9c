"""Loading LMCache's own native connector (``lmcache.lmcache_redis``) for the benchmarks.

Tried in order, the first that works wins, and the caller is told which:

1. ``import lmcache.lmcache_redis``: the package with its dependencies (torch and about
   forty more), as ``nox -s lmcache`` installs it;
2. the extension file alone (``lmcache/lmcache_redis.*.so`` from the wheel, installed
   with ``pip install --no-deps lmcache``), loaded under its own module name without
   running ``lmcache/__init__.py``. Its ``DT_NEEDED`` entries name libc10, libtorch,
   libtorch_cpu and libtorch_python, but it calls none of them: empty stand-ins built
   here with ``cc`` (each with the soname the extension asks for) and loaded first with
   ``RTLD_GLOBAL`` satisfy the dynamic loader. One thing is needed for real: the
   extension references libstdc++ symbols newer than an older system libstdc++ has
   (GCC 12's lacks ``std::string::_M_replace_cold``), which torch's ``libc10.so``
   exports. So when a torch wheel is installed (never imported: ``pip install
   --no-deps torch``), its real ``libc10.so`` is loaded instead of that stand-in.

A directory named by ``site`` (a virtualenv's site-packages) is appended to
``sys.path`` first, so respkv itself still comes from the running interpreter.

``python -m benchmarks._lmcache_loader [--site DIR]`` says which way loads (exit 0) or
why none does (exit 1): the 16-core script asks it before deciding what to install.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import importlib
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any, Final

__all__ = ["load_lmcache_redis"]

#: The torch libraries the extension lists as needed (readelf -d, lmcache 0.5.6).
TORCH_LIBS: Final = ("libc10.so", "libtorch_cpu.so", "libtorch.so", "libtorch_python.so")
MODULE: Final = "lmcache_redis"


def _find(pattern: str) -> str | None:
    for base in sys.path:
        if base and os.path.isdir(base):
            found = sorted(glob.glob(os.path.join(base, pattern)))
            if found:
                return found[0]
    return None


def _stand_ins(directory: str) -> list[str]:
    """Empty shared libraries with the torch libraries' sonames (needs ``cc``)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise OSError("no C compiler (cc) to build the stand-in libraries")
    paths = []
    for name in TORCH_LIBS:
        path = os.path.join(directory, name)
        cmd = [cc, "-shared", "-fPIC", "-o", path, f"-Wl,-soname,{name}", "-x", "c", os.devnull]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        paths.append(path)
    return paths


def _load_file(path: str) -> Any:
    loader = importlib.machinery.ExtensionFileLoader(MODULE, path)
    spec = importlib.util.spec_from_file_location(MODULE, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _load_alone() -> tuple[Any | None, str]:
    path = _find(f"lmcache/{MODULE}.*.so")
    if path is None:
        return None, "no lmcache/lmcache_redis.*.so on sys.path (pip install --no-deps lmcache)"
    real_c10 = _find("torch/lib/libc10.so")
    directory = tempfile.mkdtemp(prefix="respkv-lmcache-stand-ins-")
    try:
        for lib in _stand_ins(directory):
            use = real_c10 if real_c10 and lib.endswith("/libc10.so") else lib
            ctypes.CDLL(use, mode=ctypes.RTLD_GLOBAL)
        module = _load_file(path)
    except (OSError, ImportError, subprocess.SubprocessError) as exc:
        hint = (
            "" if real_c10 else "; a torch wheel's libc10.so may help (pip install --no-deps torch)"
        )
        return None, f"{path} does not load with stand-ins: {exc}{hint}"
    finally:
        shutil.rmtree(directory, ignore_errors=True)  # loaded libraries stay mapped
    c10 = "torch's libc10.so" if real_c10 else "a stand-in libc10"
    return module, f"the extension alone ({path}) with stand-in torch libraries and {c10}"


def load_lmcache_redis(site: str | None = None) -> tuple[Any | None, str]:
    """LMCache's ``lmcache_redis`` module and how it was loaded, or None and why not."""
    if site and site not in sys.path:
        sys.path.append(site)
    try:
        imported: Any = importlib.import_module("lmcache.lmcache_redis")
    except ImportError as exc:
        first = f"import lmcache.lmcache_redis failed ({exc})"
    else:
        version = getattr(sys.modules.get("lmcache"), "__version__", "?")
        return imported, f"lmcache {version} imported with its dependencies"
    module, how = _load_alone()
    return module, how if module is not None else f"{first}; {how}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", help="a site-packages directory to look in too")
    args = parser.parse_args(argv)
    module, how = load_lmcache_redis(args.site)
    print(("loads: " if module is not None else "does not load: ") + how)
    return 0 if module is not None else 1


if __name__ == "__main__":
    sys.exit(main())
