"""Building a plugin into a WebAssembly component; runs in the host process.

``_componentize`` runs componentize-py in a child process, ``_cache`` keeps the
built components by their inputs, ``_dependencies`` finds what a plugin bundles,
``_wit`` finds the WIT contract. The public names are exported by
:mod:`dataflare_host.wasm`.
"""
