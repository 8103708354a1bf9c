"""The parts of the RESP2 codec: :mod:`~respkv._resp2.values` (the sentinels and reply
descriptions), :mod:`~respkv._resp2.pack` (commands into buffer lists) and
:mod:`~respkv._resp2.reader` (the incremental reply reader). Import them from
:mod:`respkv.resp2`, the public module; these modules depend one way (``reader`` ->
``values``; ``pack`` alone) and on :mod:`respkv._limits`.
"""
