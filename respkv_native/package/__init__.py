"""respkv_native: the C++17 backend of respkv. Import ``respkv``, not this package;
``respkv.backend`` says whether this one is in use and why."""
