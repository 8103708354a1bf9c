"""The public toolkit for writing a connector of your own.

Everything a third-party connector needs to meet the contract (``docs/contract.md``)
the way the built-in backends do, from one public module that respkv keeps stable:

* the spec: :class:`Connector` (a ``typing.Protocol``), :data:`CONTRACT_VERSION`;
* the records: :class:`Completion`, :class:`Failure`, :class:`KeyStatus`,
  :class:`ErrorKind`, :class:`Op`, built with :func:`make_completion` (a failed key's
  status follows from its kind through :data:`STATUS_OF_KIND`, the one status map);
* the submit-time checks both backends run, so your error messages are theirs:
  :func:`check_submission` (all of a submit's arguments, in the built-in order, as a
  :class:`Submission`), or one by one :func:`check_keys`, :func:`check_buffers`,
  :func:`check_timeout`, :func:`check_ttl`,
  with the limits they enforce (:data:`MAX_KEY_BYTES`, :data:`MAX_VALUE_BYTES`,
  :data:`MAX_TIMEOUT`, :data:`MAX_TTL`);
* the options you are constructed with (:class:`ConnectionOptions`,
  :class:`TLSOptions`) and the errors you raise (:class:`ConnectionClosedError` after
  ``close()``, :class:`ForkedError` in a forked child, with :data:`FORKED_MESSAGE`).

The modules behind these names (``respkv._contract``, ``respkv._validate``, ...) are
private and may be reorganised; these names are not.
"""

from __future__ import annotations

from respkv._contract import (
    CONTRACT_VERSION,
    FAILURE_STATUSES,
    STATUS_OF_KIND,
    Completion,
    Connector,
    ErrorKind,
    Failure,
    KeyLike,
    KeyStatus,
    Op,
    format_failure,
    make_completion,
)
from respkv._options import MAX_TIMEOUT, ConnectionOptions, TLSOptions
from respkv._validate import (
    MAX_KEY_BYTES,
    MAX_TTL,
    MAX_VALUE_BYTES,
    Submission,
    check_buffers,
    check_keys,
    check_submission,
    check_timeout,
    check_ttl,
)
from respkv.client import FORKED_MESSAGE
from respkv.errors import ConnectionClosedError, ForkedError

__all__ = [
    "CONTRACT_VERSION",
    "FAILURE_STATUSES",
    "FORKED_MESSAGE",
    "MAX_KEY_BYTES",
    "MAX_TIMEOUT",
    "MAX_TTL",
    "MAX_VALUE_BYTES",
    "STATUS_OF_KIND",
    "Completion",
    "ConnectionClosedError",
    "ConnectionOptions",
    "Connector",
    "ErrorKind",
    "Failure",
    "ForkedError",
    "KeyLike",
    "KeyStatus",
    "Op",
    "Submission",
    "TLSOptions",
    "check_buffers",
    "check_keys",
    "check_submission",
    "check_timeout",
    "check_ttl",
    "format_failure",
    "make_completion",
]
