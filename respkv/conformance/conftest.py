"""The conformance suite's conftest: make sure the test kit's plugin is loaded.

It normally is already: by ``respkv-conformance`` (``-p respkv.testing.plugin``), by
respkv's own ``pyproject.toml``, or by the plugin's ``pytest11`` entry point in any pytest
where respkv is installed. Only with plugin autoloading off
(``PYTEST_DISABLE_PLUGIN_AUTOLOAD``) does this file load it.
"""

from __future__ import annotations

import sys

pytest_plugins = [] if "respkv.testing.plugin" in sys.modules else ["respkv.testing.plugin"]
